"""The scheduler's settings: the window grid, its lag, catch-up and the service's HTTP port.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_port, parse_positive_float, parse_positive_int, parse_str

WINDOW_SECONDS = define("LLMSIGHT_WINDOW_SECONDS", 60, parse_positive_int,
                         "Length of the scheduler's base window in seconds (stored as granularity 1m).", "scheduler")

WINDOW_LAG_SECONDS = define("LLMSIGHT_WINDOW_LAG_SECONDS", 20.0, parse_positive_float,
                             "How long after a window closes the scheduler waits for late events and feedback.", "scheduler")

CATCHUP_WINDOWS = define("LLMSIGHT_CATCHUP_WINDOWS", 60, parse_positive_int,
                          "Most missed base windows the scheduler computes after a pause or restart.", "scheduler")

ANALYZERS_HTTP_PORT = define("LLMSIGHT_ANALYZERS_HTTP_PORT", 9465, parse_port,
                              "Port of the analyzers' /healthz, /readyz and /metrics (0 turns it off).", "scheduler")

# -- Analysis shared by replicas through Kafka (empty LLMSIGHT_ANALYSIS_QUEUE: one process does it all) --

def parse_queue(raw: str) -> str:
    value = raw.strip()
    if value and not (value.startswith("kafka://") and "/" in value[len("kafka://"):]):
        raise ValueError("expected kafka://host:9092[,host2:9092]/topic, or empty for analysis in one process")
    return value


ANALYSIS_QUEUE = define("LLMSIGHT_ANALYSIS_QUEUE", "", parse_queue,
                        "Work topic shared by analyzer replicas: kafka://host:9092[,host2:9092]/topic (its "
                        "coordination topic is TOPIC.coord). Empty: one process analyses every window.",
                        "scheduler")
ANALYSIS_GROUP = define("LLMSIGHT_ANALYSIS_GROUP", "llmsight-analyzers", parse_str,
                        "Kafka consumer group of the analyzer replicas (the coordinator's group is GROUP.coord).",
                        "scheduler")
ANALYSIS_PARTITIONS = define("LLMSIGHT_ANALYSIS_PARTITIONS", 24, parse_positive_int,
                             "Partitions of the work topic when llmsight creates it: the most replicas that get "
                             "work; 24 splits evenly over 1, 2, 3, 4, 6, 8, 12 or 24 replicas.", "scheduler")
ANALYSIS_UNIT_SEGMENTS = define("LLMSIGHT_ANALYSIS_UNIT_SEGMENTS", 4, parse_positive_int,
                                "Segments per work unit: a window of N segments becomes N/this units.",
                                "scheduler")
ANALYSIS_SESSION_TIMEOUT_S = define("LLMSIGHT_ANALYSIS_SESSION_TIMEOUT_S", 15.0, parse_positive_float,
                                    "Kafka session timeout of a replica: how soon a dead replica's units and "
                                    "the coordinator role move to the others (6 to 1800 s).", "scheduler")
ANALYSIS_UNIT_TIMEOUT_S = define("LLMSIGHT_ANALYSIS_UNIT_TIMEOUT_S", 300.0, parse_positive_float,
                                 "A window whose units are not all done this long after it was planned has its "
                                 "missing units published again.", "scheduler")
