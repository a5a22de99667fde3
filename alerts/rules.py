"""Alert rules: loaded from YAML, each one a small typed object that judges one metric observation.

A rule file looks like this (the defaults ship in ``default-rules.yaml`` of this package; ``LLMSIGHT_RULES`` points
to a file of your own)::

    defaults:            # applied to every rule that does not say otherwise
      for: 2             # consecutive breaching windows before pending becomes firing
      min_samples: 30    # fewer observations than this count as no data
      no_data: keep      # ok (clear), alert (breach at warning) or keep (state unchanged)
      renotify: 1h       # repeat a firing alert's notification this often (0: never)
      send_recovery: true
      recover_for: 3     # consecutive clean windows before firing becomes resolved (hysteresis)
      clear: 0.03        # optional: a window is clean only past this lower level (hysteresis band)
      min_firing: 5m     # a firing alert stays firing at least this long (window time)
      flap_window: 10m   # a breach this soon after resolving re-fires the same episode, marked flapping
    rules:
      - name: output-toxicity
        metric: toxicity_rate_output
        comparison: absolute      # absolute | relative (to the baseline) | significant (p-value)
        direction: above          # above | below | any
        warning: 0.05
        critical: 0.15
        segment: {service: "checkout-*"}   # glob filters on service, name, model, prompt_version

For ``significant`` the levels are p-values (warning 0.01 means p < 0.01) and ``min_effect`` is the
smallest difference from the baseline that counts. For ``relative`` the levels are fractions of the
baseline (0.5 means 50 % above it, with ``direction: above``).

Hysteresis and flapping (see :mod:`llmsight.alerts.engine` for the state machine): a firing alert
resolves only after ``recover_for`` consecutive *clean* windows, and not before it has fired for
``min_firing``. Without ``clear`` every window that does not breach is clean; with ``clear`` (in the
units of the levels: a value, a fraction of the baseline or a p-value) a window is clean only when it
is also past that lower level, so a metric hovering just under the warning level holds the alert
instead of resolving and re-opening it. A breach within ``flap_window`` of a resolution re-fires the
same episode (same incident id), marked flapping, and the episode then resolves only after a whole
``flap_window`` of clean windows. A critical alert steps down to warning after ``recover_for`` windows
at warning, not at the first one. Without these keys a rule behaves as before they existed (one
clean window resolves it; ``flap_window`` defaults to 10m); the shipped rules set them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from llmsight.errors import ConfigError
from llmsight.store.names import SEGMENT_KEYS

COMPARISONS = ("absolute", "relative", "significant")
DIRECTIONS = ("above", "below", "any")
NO_DATA = ("ok", "alert", "keep")
SEVERITIES = ("warning", "critical")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Observation:
    """One metric row of one window and segment, as the rules see it."""

    value: float
    n: int
    baseline: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One alert rule; see the module docstring for the YAML form."""

    name: str
    metric: str
    comparison: str = "absolute"
    direction: str = "above"
    warning: float | None = None
    critical: float | None = None
    segment: dict[str, str] = field(default_factory=dict)
    min_samples: int = 30
    for_windows: int = 2
    recover_windows: int = 1
    clear: float | None = None  # hysteresis: a window is clean only past this level (None: any non-breach)
    min_firing_s: float = 0.0  # a firing alert resolves no sooner than this after it fired (window time)
    flap_window_s: float = 0.0  # a breach this soon after resolving re-fires the episode, marked flapping
    no_data: str = "keep"
    renotify_s: float = 3600.0
    send_recovery: bool = True
    min_effect: float = 0.0
    granularity: str = "1m"
    description: str = ""

    def matches(self, segment: dict[str, str]) -> bool:
        """True when every filter of the rule matches the segment (glob patterns)."""
        return all(fnmatch.fnmatchcase(segment.get(key, ""), pattern) for key, pattern in self.segment.items())

    def judge(self, obs: Observation) -> str | None:
        """The severity this observation breaches (``critical``, ``warning``) or None when it is fine.

        The caller has already checked ``min_samples``.
        """
        for severity in ("critical", "warning"):
            level = self.critical if severity == "critical" else self.warning
            if level is not None and self._breaches(obs, level):
                return severity
        if self.comparison == "significant" and obs.p_value is None and self.warning is not None:
            # A method without a p-value (a calibrated score) breaches at warning when the
            # analyzer's own threshold is crossed.
            if obs.threshold is not None and self._moved(obs.value, obs.threshold, strict=True):
                return "warning"
        return None

    def clean(self, obs: Observation) -> bool:
        """True when a window that does not breach also counts towards recovery (past ``clear``, if set)."""
        if self.judge(obs) is not None:
            return False
        return self.clear is None or not self._breaches(obs, self.clear)

    @property
    def level_unit(self) -> str:
        """What the rule's levels are: ``p-value``, ``fraction of baseline`` or ``value``."""
        return {"significant": "p-value", "relative": "fraction of baseline"}.get(self.comparison, "value")

    def level(self, severity: str) -> float | None:
        """The rule's level for a severity (critical falls back to warning when it has none)."""
        return self.critical if severity == "critical" and self.critical is not None else self.warning

    def value_threshold(self, obs: Observation | None, severity: str) -> float | None:
        """The threshold in the units of the observed value, to show next to it.

        ``absolute``: the level itself; ``relative``: the baseline moved by the level; ``significant``:
        the analyzer's own critical value of the score (never the p-value level, which is shown apart).
        """
        level = self.level(severity)
        if self.comparison == "absolute":
            return level
        if obs is None:
            return None
        if self.comparison == "relative":
            if level is None or obs.baseline is None:
                return None
            return obs.baseline * (1 - level) if self.direction == "below" else obs.baseline * (1 + level)
        return obs.threshold

    def _breaches(self, obs: Observation, level: float) -> bool:
        if self.comparison == "absolute":
            return self._moved(obs.value, level, strict=False)
        if self.comparison == "relative":
            if obs.baseline is None or obs.baseline == 0:
                return False
            change = (obs.value - obs.baseline) / abs(obs.baseline)
            return self._moved(change, level, strict=False) if self.direction != "below" else change <= -level
        # significant
        if obs.p_value is None or obs.p_value > level:
            return False
        if obs.baseline is None:
            return self.direction == "any"
        difference = obs.value - obs.baseline
        if abs(difference) < self.min_effect:
            return False
        if self.direction == "above":
            return difference > 0
        if self.direction == "below":
            return difference < 0
        return True

    def _moved(self, value: float, level: float, *, strict: bool) -> bool:
        if self.direction == "below":
            return value < level if strict else value <= level
        if self.direction == "any":
            return abs(value) > abs(level) if strict else abs(value) >= abs(level)
        return value > level if strict else value >= level


def parse_duration(raw: Any, where: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"`` or ``"1d"``."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    match = _DURATION.match(str(raw))
    if not match:
        raise ConfigError(f"{where}: {raw!r} is not a duration; use seconds or 90s, 15m, 1h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def rule_from_dict(raw: dict[str, Any], defaults: dict[str, Any], source: str) -> Rule:
    """Build one rule; every mistake raises :class:`ConfigError` naming the file and the rule."""
    merged = {**defaults, **raw}
    name = merged.get("name")
    where = f"{source}: rule {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{source}: every rule needs a name, got {raw!r}")
    known = {"name", "metric", "comparison", "direction", "warning", "critical", "segment", "min_samples",
             "for", "recover_for", "no_data", "renotify", "send_recovery", "min_effect", "granularity",
             "description", "clear", "min_firing", "flap_window"}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    metric = merged.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{where}: 'metric' is required (a name from llmsight.store.names)")
    comparison = str(merged.get("comparison", "absolute"))
    direction = str(merged.get("direction", "below" if comparison == "significant" else "above"))
    no_data = str(merged.get("no_data", "keep"))
    for key, value, allowed in (("comparison", comparison, COMPARISONS), ("direction", direction, DIRECTIONS),
                                ("no_data", no_data, NO_DATA)):
        if value not in allowed:
            raise ConfigError(f"{where}: {key} {value!r} must be one of {', '.join(allowed)}")
    warning = _level(merged.get("warning"), "warning", where)
    critical = _level(merged.get("critical"), "critical", where)
    if warning is None and critical is None:
        raise ConfigError(f"{where}: give a warning level, a critical level or both")
    if comparison == "significant":
        for level in (warning, critical):
            if level is not None and not 0 < level < 1:
                raise ConfigError(f"{where}: significant-change levels are p-values between 0 and 1")
    segment = merged.get("segment") or {}
    if not isinstance(segment, dict) or set(segment) - set(SEGMENT_KEYS):
        raise ConfigError(f"{where}: segment filters must be a mapping with keys among {SEGMENT_KEYS}")
    counts = {}
    for key, default in (("min_samples", 30), ("for", 2), ("recover_for", 1)):
        value = merged.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "min_samples" else 1):
            raise ConfigError(f"{where}: {key} must be a whole number ({'0' if key == 'min_samples' else '1'} or more)")
        counts[key] = value
    clear = _level(merged.get("clear"), "clear", where)
    if clear is not None:
        _check_clear(clear, warning if warning is not None else critical, comparison, direction, where)
    min_firing = parse_duration(merged.get("min_firing", 0), where)
    flap_window = parse_duration(merged.get("flap_window", "10m"), where)
    if min_firing < 0 or flap_window < 0:
        raise ConfigError(f"{where}: min_firing and flap_window must be 0 or more (for example 5m, 10m)")
    return Rule(
        name=name.strip(), metric=metric, comparison=comparison, direction=direction,
        warning=warning, critical=critical,
        segment={str(k): str(v) for k, v in segment.items()},
        min_samples=counts["min_samples"], for_windows=counts["for"], recover_windows=counts["recover_for"],
        clear=clear, min_firing_s=min_firing, flap_window_s=flap_window,
        no_data=no_data, renotify_s=parse_duration(merged.get("renotify", "1h"), where),
        send_recovery=bool(merged.get("send_recovery", True)),
        min_effect=float(merged.get("min_effect", 0.0)),
        granularity=str(merged.get("granularity", "1m")),
        description=str(merged.get("description", "")),
    )


def _check_clear(clear: float, level: float | None, comparison: str, direction: str, where: str) -> None:
    """``clear`` must lie on the healthy side of the lowest alerting level, or it would never be reached."""
    if level is None:  # a rule has a warning or a critical level (checked before)
        return
    if comparison == "significant":
        ok, side = level <= clear < 1, f"between the lowest p-value level {level:g} and 1"
    elif direction == "below":
        ok, side = clear >= level, f"at or above the lowest level {level:g} (direction below)"
    elif direction == "any":
        ok, side = abs(clear) <= abs(level), f"nearer zero than the lowest level {level:g}"
    else:
        ok, side = clear <= level, f"at or below the lowest level {level:g}"
    if not ok:
        raise ConfigError(f"{where}: clear {clear:g} must be {side}, so a recovering metric can reach it")


def _level(raw: Any, key: str, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {raw!r}")
    return float(raw)


def parse_rules(text: str, source: str) -> list[Rule]:
    """Rules from YAML text; raises :class:`ConfigError` on any mistake, with the file name."""
    import yaml

    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'rules' list")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{source}: 'defaults' must be a mapping")
    rules = [rule_from_dict(raw if isinstance(raw, dict) else {"name": raw}, defaults, source)
             for raw in document["rules"]]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: rule names must be unique; repeated: {duplicates}")
    return rules


def load_rules(path: str | None = None) -> list[Rule]:
    """The rules in ``path``, else in ``LLMSIGHT_RULES``, else the default set shipped in the package."""
    from llmsight import config
    from llmsight.alerts import settings

    chosen = path if path is not None else config.resolve(settings.RULES, strict=True)
    if chosen:
        file = Path(chosen).expanduser()
        if not file.is_file():
            raise ConfigError(f"LLMSIGHT_RULES={chosen!r}: no such file")
        return parse_rules(file.read_text(encoding="utf-8"), str(file))
    default = resources.files("llmsight.alerts").joinpath("default-rules.yaml")
    return parse_rules(default.read_text(encoding="utf-8"), "default-rules.yaml")
