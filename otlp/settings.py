"""The OTLP receiver's settings (``llmsight otlp``).

Each is a :class:`llmsight.config.Setting` in the one registry; the receiver reads it with
``config.resolve(setting, strict=True)`` and refuses to start on a bad value. The sink is the SDK's
``LLMSIGHT_SINK``; redaction, the text cap, prices and the Kafka security settings are the SDK's too.
"""

from __future__ import annotations

from llmsight.config import (
                      define,
                      parse_bool,
                      parse_port,
                      parse_positive_float,
                      parse_positive_int,
                      parse_str,
                      parse_text,
)

OTLP_ADDRESS = define("LLMSIGHT_OTLP_ADDRESS", "127.0.0.1", parse_str,
                      "Address the OTLP receiver listens on; beyond localhost it needs LLMSIGHT_OTLP_TOKEN.", "otlp")
OTLP_HTTP_PORT = define("LLMSIGHT_OTLP_HTTP_PORT", 4318, parse_port,
                        "Port of OTLP/HTTP (/v1/traces, /v1/logs; protobuf or JSON, gzip); 0 turns it off.", "otlp")
OTLP_GRPC_PORT = define("LLMSIGHT_OTLP_GRPC_PORT", 4317, parse_port,
                        "Port of OTLP/gRPC (trace and logs services); 0 turns it off.", "otlp")
OTLP_TOKEN = define("LLMSIGHT_OTLP_TOKEN", "", lambda raw: raw.strip(),
                    "Bearer token the receiver requires (Authorization: Bearer ...); keep it in a secret.", "otlp")
OTLP_MAX_REQUEST_BYTES = define("LLMSIGHT_OTLP_MAX_REQUEST_BYTES", 16 * 1024 * 1024, parse_positive_int,
                                "Largest OTLP request, compressed and after decompression (bounds gzip bombs).",
                                "otlp")
OTLP_WRITE_TIMEOUT_S = define("LLMSIGHT_OTLP_WRITE_TIMEOUT_S", 5.0, parse_positive_float,
                              "How long a request waits for the sink (Kafka acks=all, or the spool) before it is "
                              "answered 429 / RESOURCE_EXHAUSTED with Retry-After.", "otlp")
OTLP_MAX_IN_FLIGHT = define("LLMSIGHT_OTLP_MAX_IN_FLIGHT", 20_000, parse_positive_int,
                            "Events written and not yet acknowledged, at most; past it requests get 429 at once.",
                            "otlp")
OTLP_PROMPT_VERSION_ATTRIBUTE = define("LLMSIGHT_OTLP_PROMPT_VERSION_ATTRIBUTE", "", parse_text,
                                       "A span or resource attribute read as the prompt version before "
                                       "gen_ai.prompt.version / gen_ai.prompt.name.", "otlp")
UP_OTLP = define("LLMSIGHT_UP_OTLP", True, parse_bool,
                 "`llmsight up` also runs the OTLP receiver (LLMSIGHT_OTLP_ADDRESS and ports) into its sink; "
                 "false (or --no-otlp) leaves it out.", "otlp")
OTLP_JOIN_WINDOW_S = define("LLMSIGHT_OTLP_JOIN_WINDOW_S", 30.0, parse_positive_float,
                            "How long GenAI content sent as log records waits for its span (and a span without "
                            "content for its log records) to be joined into one call.", "otlp")
OTLP_JOIN_MAX_ENTRIES = define("LLMSIGHT_OTLP_JOIN_MAX_ENTRIES", 50_000, parse_positive_int,
                               "Spans and content log records kept for that join, at most (oldest out first; "
                               "about 1 KB each).",
                               "otlp")


def _parse_workers(raw: str) -> object:
    value = raw.strip().lower()
    if value == "auto":
        return "auto"
    number = int(value)
    if not 0 <= number <= 64:
        raise ValueError("expected auto, or a number of worker processes from 0 (map in the receiver's process) to 64")
    return number


OTLP_WORKERS = define("LLMSIGHT_OTLP_WORKERS", "auto", _parse_workers,
                      "Processes that parse and map trace requests beside the receiver's (which keeps the servers, "
                      "the content join and the Kafka producer): auto is one per usable CPU, at most 4 (none on "
                      "one CPU); 0 maps in the receiver's process.", "otlp")
