"""The weekly review's settings: where and when the export runs, and the sample size.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_positive_int, parse_str


def parse_export_cron(raw: str) -> str:
    import re

    value = " ".join(raw.split())
    short = re.fullmatch(r"(mon|tue|wed|thu|fri|sat|sun) ([01]?\d|2[0-3]):[0-5]\d", value.lower())
    if not short and len(value.split(" ")) != 5:
        raise ValueError("expected 'DAY HH:MM' (for example 'mon 06:00') or a 5-field crontab line")
    return value

EXPORT_DIR = define("LLMSIGHT_EXPORT_DIR", "~/.llmsight/exports", parse_str,
                     "Folder the weekly quality-review export writes to (one subfolder per ISO week).", "review")

EXPORT_CRON = define("LLMSIGHT_EXPORT_CRON", "tue 06:00", parse_export_cron,
                      "When the weekly export runs, in UTC: 'DAY HH:MM' or a 5-field crontab line. Tuesday, "
                      "because feedback is counted until a day after the week (Tuesday 00:00 UTC); a run "
                      "before that writes a provisional export and says so.", "review")

EXPORT_SAMPLE_SIZE = define("LLMSIGHT_EXPORT_SAMPLE_SIZE", 200, parse_positive_int,
                             "Calls drawn at random (stratified by segment) into the review sample, besides "
                             "every flagged call.", "review")
