"""The dashboard's settings: its password, refresh and query cache.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_positive_float

DASHBOARD_PASSWORD = define("LLMSIGHT_DASHBOARD_PASSWORD", "", lambda raw: raw,
                             "Password of the dashboard (keep it in a secret); required when it listens beyond "
                             "localhost unless Streamlit's OIDC login ([auth] in secrets.toml) is configured.", "dashboard")

DASHBOARD_REFRESH_S = define("LLMSIGHT_DASHBOARD_REFRESH_S", 30.0, parse_positive_float,
                              "Seconds between the dashboard's live refreshes.", "dashboard")

DASHBOARD_CACHE_TTL_S = define("LLMSIGHT_DASHBOARD_CACHE_TTL_S", 15.0, parse_positive_float,
                                "Seconds a dashboard query result is reused before it is run again.", "dashboard")
