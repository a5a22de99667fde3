-- Reviewers' labels on calls (issue 20): from the dashboard's review queue or `llmsight review import`.
--
-- One row per label given: the verdict (accept or reject), tags (wrong, off-topic, toxic, unsafe,
-- refusal), an edited answer and a comment. A reviewer who labels a call again writes a newer row;
-- the latest label per (trace_id, reviewer) wins: labelled_at is the ReplacingMergeTree version, and
-- readers take argMax(..., labelled_at) so the answer does not wait for a merge. Labels hold users'
-- texts (the edited answer), so they leave with the retention like every other table.

CREATE TABLE IF NOT EXISTS {db}.review_labels {on_cluster}
(
    trace_id      String,
    reviewer      String,
    labelled_at   DateTime64(3, 'UTC'),
    event_id      String DEFAULT '',
    verdict       LowCardinality(String),
    tags          Array(LowCardinality(String)),
    edited_output String CODEC(ZSTD(3)),
    comment       String CODEC(ZSTD(3)),
    source        LowCardinality(String),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replacing_versioned}(labelled_at)
ORDER BY (trace_id, reviewer)
TTL toDateTime(labelled_at) + INTERVAL {ttl_days} DAY;
