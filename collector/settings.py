"""The collector's settings (``llmsight collector`` and the collector thread of ``llmsight up``).

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_port, parse_positive_float, parse_positive_int, parse_str

# 10,000 events / 16 MB: each insert is one new part in ClickHouse, so fewer, larger inserts mean less
# work per event and fewer merges (5,000 ingested ~10% slower in `llmsight bench ingest`); two
# batches (one read, one being written) stay under ~100 MB of memory even at the byte limit.
COLLECTOR_BATCH_EVENTS = define("LLMSIGHT_COLLECTOR_BATCH_EVENTS", 10_000, parse_positive_int,
                                 "Messages per insert at most (a batch closes at this count, time or size).", "collector")

COLLECTOR_BATCH_SECONDS = define("LLMSIGHT_COLLECTOR_BATCH_SECONDS", 1.0, parse_positive_float,
                                  "Longest a message waits in the collector before its batch is inserted.", "collector")

COLLECTOR_BATCH_BYTES = define("LLMSIGHT_COLLECTOR_BATCH_BYTES", 16 * 1024 * 1024, parse_positive_int,
                                "Raw bytes per insert at most; bounds the collector's memory.", "collector")

COLLECTOR_MAX_MESSAGE_BYTES = define("LLMSIGHT_COLLECTOR_MAX_MESSAGE_BYTES", 1024 * 1024, parse_positive_int,
                                      "Larger messages go to dead_letters (their first bytes are kept).", "collector")

COLLECTOR_GROUP = define("LLMSIGHT_COLLECTOR_GROUP", "llmsight-collector", parse_str,
                          "Kafka consumer group: collectors in one group share the topic's partitions.", "collector")

COLLECTOR_HTTP_PORT = define("LLMSIGHT_COLLECTOR_HTTP_PORT", 9464, parse_port,
                              "Port of the collector's /metrics, /healthz and /readyz (0 turns it off).", "collector")

COLLECTOR_SESSION_TIMEOUT_S = define("LLMSIGHT_COLLECTOR_SESSION_TIMEOUT_S", 45.0, parse_positive_float,
                                      "Kafka group session timeout: how soon a dead collector's partitions "
                                      "move to the others (the broker allows 6 to 1800 s).", "collector")

COLLECTOR_RETRY_MAX_S = define("LLMSIGHT_COLLECTOR_RETRY_MAX_S", 30.0, parse_positive_float,
                                "Longest pause between insert retries while the store is unreachable.", "collector")
