-- A bloom-filter skip index on events.trace_id: opening a trace, and joining feedback to its calls,
-- look calls up by trace id, which the sort key (service, day, event id) cannot prune. With the
-- index a lookup reads the few granules that may hold the trace instead of every trace id in the
-- time range (about 3x faster on 10M events). Parts written before this migration get the index
-- when they merge.

ALTER TABLE {db}.events {on_cluster}
    ADD INDEX IF NOT EXISTS trace_id_bloom trace_id TYPE bloom_filter(0.001) GRANULARITY 1;
