"""The scheduler's settings: the window grid, its lag, catch-up and the service's HTTP port.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_port, parse_positive_float, parse_positive_int

WINDOW_SECONDS = define("LLMSIGHT_WINDOW_SECONDS", 60, parse_positive_int,
                         "Length of the scheduler's base window in seconds (stored as granularity 1m).", "scheduler")

WINDOW_LAG_SECONDS = define("LLMSIGHT_WINDOW_LAG_SECONDS", 20.0, parse_positive_float,
                             "How long after a window closes the scheduler waits for late events and feedback.", "scheduler")

CATCHUP_WINDOWS = define("LLMSIGHT_CATCHUP_WINDOWS", 60, parse_positive_int,
                          "Most missed base windows the scheduler computes after a pause or restart.", "scheduler")

ANALYZERS_HTTP_PORT = define("LLMSIGHT_ANALYZERS_HTTP_PORT", 9465, parse_port,
                              "Port of the analyzers' /healthz, /readyz and /metrics (0 turns it off).", "scheduler")
