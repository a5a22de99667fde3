-- The six tables of llmsight. Placeholders: {db} the database, {ttl_days} the retention,
-- {on_cluster} an ON CLUSTER clause or nothing, {replacing}/{merge_tree} the table engines
-- (Replicated* variants on a cluster).

CREATE TABLE IF NOT EXISTS {db}.events {on_cluster}
(
    event_id       UUID,
    trace_id       String,
    parent_id      String,
    ts             DateTime64(3, 'UTC'),
    service        LowCardinality(String),
    environment    LowCardinality(String),
    name           LowCardinality(String),
    model          LowCardinality(String),
    prompt_version LowCardinality(String),
    input          String CODEC(ZSTD(3)),
    output         String CODEC(ZSTD(3)),
    error          String CODEC(ZSTD(3)),
    error_type     LowCardinality(String),
    latency_ms     Float64,
    ttft_ms        Nullable(Float64),
    tokens_in      Nullable(UInt32),
    tokens_out     Nullable(UInt32),
    cost_usd       Nullable(Float64),
    user_id        String,
    session_id     String,
    tags           Map(String, String),
    metadata       String CODEC(ZSTD(3)),
    truncated      UInt8,
    source         String CODEC(ZSTD(3)),
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing}
PARTITION BY toYYYYMM(ts)
ORDER BY (service, toDate(ts), event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.feedback {on_cluster}
(
    event_id      UUID,
    trace_id      String,
    ts            DateTime64(3, 'UTC'),
    accepted      Nullable(UInt8),
    score         Nullable(Float64),
    comment       String CODEC(ZSTD(3)),
    edited_output String CODEC(ZSTD(3)),
    user_id       String,
    source        String CODEC(ZSTD(3)),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing}
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), trace_id, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.embeddings {on_cluster}
(
    model      LowCardinality(String),
    text_hash  String,
    vector     Array(Float32),
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing}
ORDER BY (model, text_hash);

CREATE TABLE IF NOT EXISTS {db}.metrics {on_cluster}
(
    window_start   DateTime('UTC'),
    window_end     DateTime('UTC'),
    granularity    LowCardinality(String),
    service        LowCardinality(String),
    name           LowCardinality(String),
    model          LowCardinality(String),
    prompt_version LowCardinality(String),
    metric         LowCardinality(String),
    value          Float64,
    n              UInt64,
    baseline       Nullable(Float64),
    p_value        Nullable(Float64),
    threshold      Nullable(Float64),
    details        String CODEC(ZSTD(3)),
    computed_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, granularity, service, name, model, prompt_version, window_start)
TTL window_start + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.alerts {on_cluster}
(
    alert_id       String,
    rule           LowCardinality(String),
    metric         LowCardinality(String),
    severity       LowCardinality(String),
    state          LowCardinality(String),
    service        LowCardinality(String),
    name           LowCardinality(String),
    model          LowCardinality(String),
    prompt_version LowCardinality(String),
    value          Nullable(Float64),
    threshold      Nullable(Float64),
    baseline       Nullable(Float64),
    p_value        Nullable(Float64),
    window_start   DateTime('UTC'),
    evidence       String CODEC(ZSTD(3)),
    acked_by       String,
    ack_note       String,
    changed_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {merge_tree}
PARTITION BY toYYYYMM(changed_at)
ORDER BY (rule, alert_id, changed_at);

CREATE TABLE IF NOT EXISTS {db}.dead_letters {on_cluster}
(
    received_at DateTime64(3, 'UTC') DEFAULT now64(3),
    source      String,
    reason      String,
    raw         String CODEC(ZSTD(3))
)
ENGINE = {merge_tree}
PARTITION BY toYYYYMM(received_at)
ORDER BY received_at
TTL toDateTime(received_at) + INTERVAL {ttl_days} DAY;
