-- The alert state machine's own columns: which transition a row records, the breach and clear
-- streaks (so a restart resumes counting windows), and when the alert fired, was last notified
-- and was acknowledged.

ALTER TABLE {db}.alerts {on_cluster}
    ADD COLUMN IF NOT EXISTS transition LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS granularity LowCardinality(String) DEFAULT '1m',
    ADD COLUMN IF NOT EXISTS streak UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS ok_streak UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS fired_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS notified_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS acked_at Nullable(DateTime64(3, 'UTC'));
