-- Alert silences: "I know about this, do not page me for 2 hours". A silence matches one rule and,
-- optionally, a segment (an empty column matches any value) until `until`. A firing alert it matches
-- is still recorded but not notified. Removing a silence early writes a newer row of the same
-- silence_id with removed_at set; readers take the newest row per silence_id (updated_at is the
-- ReplacingMergeTree version, so merges keep that row too). Old silences leave with the TTL.
--
-- The alerts table gets the bookkeeping of held-back notifications: held_back is the notification a
-- silence kept from going out (firing, escalated...) and silenced_by the silence that did it; once
-- the silence ends, a still-firing alert sends that notification once and both are cleared.

CREATE TABLE IF NOT EXISTS {db}.alert_silences {on_cluster}
(
    silence_id     String,
    rule           LowCardinality(String),
    service        LowCardinality(String),
    name           LowCardinality(String),
    model          LowCardinality(String),
    prompt_version LowCardinality(String),
    until          DateTime64(3, 'UTC'),
    created_by     String,
    reason         String,
    created_at     DateTime64(3, 'UTC'),
    removed_by     String DEFAULT '',
    removed_at     Nullable(DateTime64(3, 'UTC')),
    updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(updated_at)
ORDER BY silence_id
TTL toDateTime(until) + INTERVAL {ttl_days} DAY;

ALTER TABLE {db}.alerts {on_cluster}
    ADD COLUMN IF NOT EXISTS held_back LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS silenced_by String DEFAULT '';
