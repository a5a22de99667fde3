-- Analysis progress, shared by every analyzer process: which windows are planned and evaluated, and
-- which work units of each are done. In embedded mode one process writes both; with analyzer
-- replicas the member that owns partition 0 of the work topic plans windows (one row each, with the
-- number of work units it cut them into), every worker writes one row per unit it finished (after
-- its metric rows), and the planner evaluates the alert rules once all of a window's units are done.
-- Rows are versioned by updated_at / done_at, so a unit or a plan redone after a crash replaces its
-- earlier row. A window planned again (its segments changed, say) gets a new plan number (the
-- planning time in ms), and only units of its current plan count. The lag (how far analysis is
-- behind) is read from here.

CREATE TABLE IF NOT EXISTS {db}.analysis_windows {on_cluster}
(
    granularity  LowCardinality(String),
    window_start DateTime('UTC'),
    window_end   DateTime('UTC'),
    units        UInt32,
    state        LowCardinality(String),
    planned_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(updated_at)
ORDER BY (granularity, window_start)
TTL toDateTime(window_start) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.analysis_units {on_cluster}
(
    granularity  LowCardinality(String),
    window_start DateTime('UTC'),
    plan         UInt64,
    unit_id      String,
    segments     UInt32,
    metric_rows  UInt32,
    worker       String,
    seconds      Float64,
    done_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(done_at)
ORDER BY (granularity, window_start, unit_id)
TTL toDateTime(window_start) + INTERVAL {ttl_days} DAY;
