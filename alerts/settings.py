"""Alerting's settings: the rules file and the notification targets.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_bool, parse_positive_int, parse_text

RULES = define("LLMSIGHT_RULES", "", parse_text,
                "Path to a YAML file of alert rules; empty means the default rules shipped in the package.", "alerts")

WEBHOOK_URL = define("LLMSIGHT_WEBHOOK_URL", "", parse_text,
                      "Generic JSON webhook that receives alert notifications (keep it in a secret).", "alerts")

WEBHOOK_TOKEN = define("LLMSIGHT_WEBHOOK_TOKEN", "", parse_text,
                        "Bearer token sent to LLMSIGHT_WEBHOOK_URL, if it needs one.", "alerts")

SLACK_WEBHOOK_URL = define("LLMSIGHT_SLACK_WEBHOOK_URL", "", parse_text,
                            "Slack incoming-webhook URL for alert notifications (keep it in a secret).", "alerts")

NOTIFY_MAX_ATTEMPTS = define("LLMSIGHT_NOTIFY_MAX_ATTEMPTS", 6, parse_positive_int,
                              "Attempts per notification (exponential backoff between them).", "alerts")

NOTIFY_EXAMPLES = define("LLMSIGHT_NOTIFY_EXAMPLES", False, parse_bool,
                          "Put the example texts behind an alert (users' prompts and outputs) in notifications; "
                          "off by default, since they carry user text to a third party (Slack, a webhook).",
                          "alerts")
