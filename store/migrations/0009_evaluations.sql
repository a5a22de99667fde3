-- Online evaluators' verdicts, one row per evaluated call and evaluator (llmsight.evaluators).
-- ts is the call's time (the window it belongs to), evaluated_at when the verdict was written.
-- score is in [0, 1] with 1 the best (NULL when an evaluator gives only a label); flagged = 1 when
-- the evaluator judges the answer bad. kind is 'judge' (an LLM judge on the user's endpoint) or
-- 'offline'. tokens and cost_usd are what a judge call spent (0 for offline evaluators): the daily
-- caps are read back from here after a restart. The key (evaluator, day, trace_id, event_id) with
-- evaluated_at as the version makes a rerun replace its earlier rows instead of adding to them.
-- The review queue and the monitors' precision read (trace_id, evaluator, score, label, flagged).

CREATE TABLE IF NOT EXISTS {db}.evaluations {on_cluster}
(
    ts             DateTime64(3, 'UTC'),
    trace_id       String,
    event_id       UUID,
    evaluator      LowCardinality(String),
    kind           LowCardinality(String),
    score          Nullable(Float64),
    label          LowCardinality(String),
    flagged        UInt8,
    reason         String CODEC(ZSTD(3)),
    service        LowCardinality(String),
    name           LowCardinality(String),
    model          LowCardinality(String),
    prompt_version LowCardinality(String),
    tokens         UInt32,
    cost_usd       Float64,
    evaluated_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(evaluated_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (evaluator, toDate(ts), trace_id, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY;
