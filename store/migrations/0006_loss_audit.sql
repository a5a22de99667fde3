-- The loss audit and the dead-letter kinds.
--
-- producer_heartbeats: each SDK process (a producer_id, new at every start or fork) sends its
-- cumulative counters now and then; a lost heartbeat loses nothing, the next carries the totals.
-- ReplacingMergeTree by event_id folds a heartbeat stored twice (at-least-once delivery).
--
-- events.producer_id / feedback.producer_id: the producer that sent the row ('' when the event
-- carried none), so the audit compares what a producer sent with what the store holds.
-- dead_letters.kind: the short label of the reason (bad_json, unknown_schema_version, ...), which
-- `llmsight dead-letters replay --reason` selects on.

CREATE TABLE IF NOT EXISTS {db}.producer_heartbeats {on_cluster}
(
    event_id    UUID,
    ts          DateTime64(3, 'UTC'),
    producer_id String,
    service     LowCardinality(String),
    environment LowCardinality(String),
    host        LowCardinality(String),
    pid         UInt32,
    started_at  String,
    sent        UInt64,
    dropped     UInt64,
    spilled     UInt64,
    failed      UInt64,
    source      String CODEC(ZSTD(3)),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing}
PARTITION BY toYYYYMM(ts)
ORDER BY (producer_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

ALTER TABLE {db}.events {on_cluster}
    ADD COLUMN IF NOT EXISTS producer_id LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.feedback {on_cluster}
    ADD COLUMN IF NOT EXISTS producer_id LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.dead_letters {on_cluster}
    ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT '';
