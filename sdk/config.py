"""Every ``LLMSIGHT_*`` setting, in one place.

Each setting is a named constant with one line of documentation. Precedence is always:
an explicit argument, then the environment variable, then the default.

Two ways to read a setting:

* ``resolve(setting, strict=False)`` — the SDK's way. A bad value is logged once and the
  default is used, because the SDK must never break the host application.
* ``resolve(setting, strict=True)`` — the services' way. A bad value raises
  :class:`ConfigError` with a message that names the variable, the value and what is expected.

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
PRICES = _define("LLMSIGHT_PRICES", "", lambda raw: raw.strip(),
                 "Path to a JSON file of per-model prices in USD per 1M tokens: {\"model\": [in, out]}.")

# -- Store ----------------------------------------------------------------------------------------
CLICKHOUSE_URL = _define("LLMSIGHT_CLICKHOUSE_URL", "chdb://~/.llmsight/db", _parse_str,
                         "The store: chdb:///path (in-process, the default) or http(s)://user:pass@host:8123/db.",
                         "store")
CLICKHOUSE_CLUSTER = _define("LLMSIGHT_CLICKHOUSE_CLUSTER", "", lambda raw: raw.strip(),
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
KAFKA_SASL_USERNAME = _define("LLMSIGHT_KAFKA_SASL_USERNAME", "", lambda raw: raw.strip(),
                              "SASL user name with a SASL_* protocol.")
KAFKA_SASL_PASSWORD = _define("LLMSIGHT_KAFKA_SASL_PASSWORD", "", lambda raw: raw,
                              "SASL password with a SASL_* protocol (keep it in a secret).")
KAFKA_SSL_CAFILE = _define("LLMSIGHT_KAFKA_SSL_CAFILE", "", lambda raw: raw.strip(),
                           "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); "
                           "empty means the system trust store.")


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


def resolve(setting: Setting, override: Any = None, *, strict: bool = False) -> Any:
    """Return the setting's value: ``override`` if given, else the environment, else the default.

    With ``strict`` a bad environment value raises :class:`ConfigError`; without it the
    problem is logged once and the default is returned.
    """
    if override is not None:
        return override
    raw = os.environ.get(setting.name)
    if raw is None or raw == "":
        return setting.default
    try:
        return setting.parse(raw)
    except (ValueError, TypeError) as exc:
        message = f"{setting.name}={raw!r} is not valid: {exc}. {setting.doc}"
        if strict:
            raise ConfigError(message) from None
        _warn_once(setting.name, f"{message} Using the default {setting.default!r}.")
        return setting.default


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("llmsight: %s", message)
