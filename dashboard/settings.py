"""The dashboard's settings: its password, refresh and query cache.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_positive_float, parse_positive_int, parse_text

DASHBOARD_PASSWORD = define("LLMSIGHT_DASHBOARD_PASSWORD", "", lambda raw: raw,
                             "Password of the dashboard (keep it in a secret; at least 12 characters); required when "
                             "it listens beyond localhost unless Streamlit's OIDC login ([auth] in secrets.toml) is "
                             "configured.", "dashboard")

DASHBOARD_REFRESH_S = define("LLMSIGHT_DASHBOARD_REFRESH_S", 30.0, parse_positive_float,
                              "Seconds between the dashboard's live refreshes.", "dashboard")

DASHBOARD_CACHE_TTL_S = define("LLMSIGHT_DASHBOARD_CACHE_TTL_S", 15.0, parse_positive_float,
                                "Seconds a dashboard query result is reused before it is run again.", "dashboard")

DASHBOARD_SESSION_HOURS = define("LLMSIGHT_DASHBOARD_SESSION_HOURS", 12.0, parse_positive_float,
                                  "Hours a dashboard login lasts (password or OIDC); then it asks again.", "dashboard")

DASHBOARD_ALLOWED_USERS = define("LLMSIGHT_DASHBOARD_ALLOWED_USERS", "", parse_text,
                                  "With Streamlit's OIDC login: comma-separated e-mail addresses and domains "
                                  "(example.com or @example.com) allowed in; required when the dashboard listens "
                                  "beyond localhost.", "dashboard")

DASHBOARD_DOWNLOAD_MAX_BYTES = define("LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES", 268435456, parse_positive_int,
                                       "Largest file or zip the Export page offers for download (bigger exports "
                                       "are read from LLMSIGHT_EXPORT_DIR on the server).", "dashboard")
