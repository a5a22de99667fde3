-- Every table leaves with the retention. Alerts and embeddings kept their rows for ever: alert rows
-- (each transition of an alert, with its evidence) now leave {ttl_days} days after the transition,
-- embeddings {ttl_days} days after the vector was computed (a text seen again later is embedded
-- again). events, feedback, metrics, dead letters and silences already had the TTL.
--
-- Changing LLMSIGHT_RETENTION_DAYS later re-renders the TTL of every table whose TTL uses the
-- retention at the next `llmsight db migrate` (store/migrate.py records the retention it applied).

ALTER TABLE {db}.alerts {on_cluster}
    MODIFY TTL toDateTime(changed_at) + INTERVAL {ttl_days} DAY;

ALTER TABLE {db}.embeddings {on_cluster}
    MODIFY TTL toDateTime(created_at) + INTERVAL {ttl_days} DAY;
