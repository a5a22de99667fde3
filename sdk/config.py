"""The SDK's ``LLMSIGHT_*`` settings, and the registry every room's settings join.

Each setting is a named constant with one line of documentation, defined with :func:`define` in the
room that reads it: the SDK's here (with the Kafka client security settings, which the collector
shares), the services' in ``llmsight.store.settings``, ``llmsight.collector.settings``,
``llmsight.analyzers.settings``, ``llmsight.alerts.settings``, ``llmsight.review.settings``,
``llmsight.scheduler.settings`` and ``llmsight.dashboard.settings``. Defining a setting registers it
in :data:`SETTINGS`, so one registry still generates the README's table
(``llmsight.cli.settings.all_settings``). Precedence is always:
an explicit argument, then the environment variable, then the default.

Two ways to read a setting:

* ``resolve(setting, strict=False)`` — the SDK's way. A bad value is logged once and the
  default is used, because the SDK must never break the host application.
* ``resolve(setting, strict=True)`` — the services' way. A bad value raises
  :class:`ConfigError` with a message that names the variable, the value and what is expected.

``resolve(setting, argument, check=True)`` reads an explicit argument through the same parser
(``llmsight.init`` does), so a setting's rule is written once, here.

The README's configuration table is checked against the registry by a test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmsight.errors import ConfigError, masked_url

log = logging.getLogger("llmsight")


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def parse_fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return value


def parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("expected a number above 0")
    return value


def parse_non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of 0 or more (0 turns it off)")
    return value


def parse_text(raw: str) -> str:
    """Any text, surrounding blanks removed; empty means "not set" (a path, a URL, a name)."""
    return raw.strip()


def parse_str(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def parse_port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a TCP port from 0 to 65535 (0 turns it off)")
    return value


def parse_choice(*choices: str) -> Callable[[str], str]:
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
    service: str = "sdk"  # the room that reads it: sdk, store, collector, analyzers, alerts, ...


SETTINGS: dict[str, Setting] = {}


def define(name: str, default: Any, parse: Callable[[str], Any], doc: str, service: str = "sdk") -> Setting:
    setting = Setting(name, default, parse, doc, service)
    SETTINGS[name] = setting
    return setting


# -- SDK ------------------------------------------------------------------------------------------
SINK = define("LLMSIGHT_SINK", "file://~/.llmsight/spool", parse_str,
               "Where events go: kafka://host:9092[,host2:9092]/topic or file:///path/to/spool.")
SERVICE = define("LLMSIGHT_SERVICE", "default", parse_str, "The service name recorded on every event.")
ENVIRONMENT = define("LLMSIGHT_ENVIRONMENT", "production", parse_str,
                      "The environment recorded on every event (production, staging, ...).")
SAMPLE_RATE = define("LLMSIGHT_SAMPLE_RATE", 1.0, parse_fraction,
                      "Fraction of traces recorded, decided once per trace (0 to 1).")
REDACT = define("LLMSIGHT_REDACT", True, parse_bool,
                 "Redact e-mails, phones, cards, IBANs, keys, tokens and IPs before events leave the process.")
DISABLED = define("LLMSIGHT_DISABLED", False, parse_bool,
                   "Turn the SDK off: monitored functions run untouched and nothing is recorded.")
MAX_TEXT_CHARS = define("LLMSIGHT_MAX_TEXT_CHARS", 32_768, parse_positive_int,
                         "Longest input or output text kept per event; longer text is truncated and flagged.")
QUEUE_SIZE = define("LLMSIGHT_QUEUE_SIZE", 10_000, parse_positive_int,
                     "Events held in memory before the oldest is dropped (and counted).")
QUEUE_MAX_BYTES = define("LLMSIGHT_QUEUE_MAX_BYTES", 64 * 1024 * 1024, parse_positive_int,
                          "Approximate bytes of call data held in memory before the oldest event is dropped (and counted).")
BATCH_SIZE = define("LLMSIGHT_BATCH_SIZE", 512, parse_positive_int,
                     "Events the worker sends in one batch.")
FLUSH_INTERVAL_S = define("LLMSIGHT_FLUSH_INTERVAL_S", 1.0, parse_positive_float,
                           "Longest time an event waits in the queue before it is sent.")
EXIT_TIMEOUT_S = define("LLMSIGHT_EXIT_TIMEOUT_S", 2.0, parse_positive_float,
                         "Deadline for the flush at interpreter exit.")
SPILL_MAX_BYTES = define("LLMSIGHT_SPILL_MAX_BYTES", 256 * 1024 * 1024, parse_positive_int,
                          "Cap on the local spill spool used while Kafka is unreachable, shared by every process on the "
                          "host (oldest dropped and counted).")
SPOOL_MAX_BYTES = define("LLMSIGHT_SPOOL_MAX_BYTES", 1024 * 1024 * 1024, parse_positive_int,
                          "Cap on a file:// spool directory, shared by every process on the host (oldest closed "
                          "segments dropped and counted).")
HEARTBEAT_S = define("LLMSIGHT_HEARTBEAT_S", 60.0, parse_non_negative_float,
                      "How often each process sends a heartbeat with its cumulative counters for the loss audit "
                      "(also at flush and shutdown); 0 turns it off.")
SPOOL_SEGMENT_BYTES = define("LLMSIGHT_SPOOL_SEGMENT_BYTES", 64 * 1024 * 1024, parse_positive_int,
                              "Size at which a spool segment is closed and a new one started.")
SPOOL_FSYNC = define("LLMSIGHT_SPOOL_FSYNC", "batch", parse_choice("never", "batch", "always"),
                      "When the spool calls fsync: never, after each batch, or after each event.")
PRICES = define("LLMSIGHT_PRICES", "", parse_text,
                 "Path to a JSON file of per-model prices in USD per 1M tokens: {\"model\": [in, out]}.")
SPILL_DIR = define("LLMSIGHT_SPILL_DIR", "~/.llmsight/spill", parse_str,
                    "Where the Kafka sink spills events while the broker is unreachable (replayed when it returns).")
KAFKA_COMPRESSION = define("LLMSIGHT_KAFKA_COMPRESSION", "auto",
                            parse_choice("auto", "lz4", "gzip", "zstd", "snappy", "none"),
                            "Kafka producer compression; auto picks lz4 when the lz4 package is installed, else gzip.")


# -- Kafka security (SDK sink and collector source; the Helm chart sets these) --------------------
# The names of kafka-python's own options, so that kafka_security_options() maps them one to one.
_KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def parse_upper_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


KAFKA_SECURITY_PROTOCOL = define(
    "LLMSIGHT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", parse_upper_choice(*_KAFKA_PROTOCOLS),
    "How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
KAFKA_SASL_MECHANISM = define(
    "LLMSIGHT_KAFKA_SASL_MECHANISM", "", parse_upper_choice(*_KAFKA_SASL_MECHANISMS),
    "SASL mechanism with a SASL_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
KAFKA_SASL_USERNAME = define("LLMSIGHT_KAFKA_SASL_USERNAME", "", parse_text,
                              "SASL user name with a SASL_* protocol.")
KAFKA_SASL_PASSWORD = define("LLMSIGHT_KAFKA_SASL_PASSWORD", "", lambda raw: raw,
                              "SASL password with a SASL_* protocol (keep it in a secret).")
KAFKA_SSL_CAFILE = define("LLMSIGHT_KAFKA_SSL_CAFILE", "", parse_text,
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
        given = f"{setting.name}={masked_url(raw)!r}" + (" (an argument)" if source == "argument" else "")
        message = masked_url(f"{given} is not valid: {exc}. {setting.doc}")
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


