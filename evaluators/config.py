"""The evaluators' YAML file, read into small typed objects; every mistake is a ConfigError naming it.

A file looks like this (the shipped ``default-evaluators.yaml`` lists every kind, all off;
``LLMSIGHT_EVALUATORS_FILE`` points to a file of your own)::

    defaults:
      sample_per_segment: 20     # calls evaluated per segment and base window (deterministic sample)
      flag_below: 0.5            # a score under this flags the call
    evaluators:
      - name: relevance          # metric eval_relevance; [a-z0-9_], unique
        check: relevance         # offline: relevance | empty_or_truncated | language_mismatch | pii_leak
        min_cosine: 0.15         # relevance only: cosine at which the score reaches 0.5
      - name: helpfulness
        rubric: helpfulness      # a judge: helpfulness | instruction_following | groundedness |
                                 # refusal_appropriateness | custom (with prompt:)
        sample_per_segment: 3
        segment: {service: "checkout-*"}
        judge:
          base_url: http://localhost:11434/v1
          model: llama3.1:8b
          api_key_env: OLLAMA_API_KEY        # the variable that holds the key (never the key itself)
          daily_tokens: 200000
          daily_cost_usd: 2.0
          price_in_per_1m: 0.0
          price_out_per_1m: 0.0

An evaluator is on unless it says ``enabled: false``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from llmsight.errors import ConfigError
from llmsight.store.names import SEGMENT_KEYS, eval_metric

OFFLINE_CHECKS = ("relevance", "empty_or_truncated", "language_mismatch", "pii_leak")
RUBRICS = ("helpfulness", "instruction_following", "groundedness", "refusal_appropriateness", "custom")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class JudgeOptions:
    """Where and how a judge calls its model, and what it may spend per UTC day."""

    base_url: str
    model: str
    api_key_env: str = ""
    timeout_s: float = 20.0
    max_retries: int = 3            # retries after the first attempt, on 429, 5xx, timeouts, connection errors
    backoff_s: float = 0.5          # first pause; doubled each retry (with jitter), at most backoff_max_s
    backoff_max_s: float = 8.0
    concurrency: int = 4            # judge calls in flight at once
    deadline_s: float = 45.0        # a run's judge calls not done by then are left for the next run
    daily_tokens: int = 200_000     # 0: no token cap
    daily_cost_usd: float = 0.0     # 0: no cost cap
    price_in_per_1m: float = 0.0
    price_out_per_1m: float = 0.0
    max_tokens: int = 300
    temperature: float = 0.0
    json_mode: bool = False         # send response_format={"type": "json_object"} (OpenAI, vLLM, Ollama)
    breaker_failures: int = 5       # consecutive failed calls that open the circuit
    breaker_cooldown_s: float = 60.0

    def api_key(self) -> str:
        """The key from the variable the YAML names; local servers take any non-empty key."""
        return str(os.environ.get(self.api_key_env, "")) if self.api_key_env else "unused"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return float(tokens_in * self.price_in_per_1m + tokens_out * self.price_out_per_1m) / 1e6


@dataclass(frozen=True)
class Evaluator:
    """One evaluator: an offline ``check`` or a judge ``rubric`` (with ``judge`` options)."""

    name: str
    check: str = ""                 # offline evaluators
    rubric: str = ""                # judges
    prompt: str = ""                # the custom rubric's template
    judge: JudgeOptions | None = None
    enabled: bool = True
    sample_per_segment: int = 20
    flag_below: float = 0.5
    segment: dict[str, str] = field(default_factory=dict)
    context_key: str = "context"    # groundedness: the metadata key that holds the provided context
    min_cosine: float = 0.15        # relevance
    min_chars: int = 1              # empty_or_truncated: shorter (after stripping) is empty
    description: str = ""

    @property
    def kind(self) -> str:
        return "judge" if self.rubric else "offline"

    @property
    def metric(self) -> str:
        return eval_metric(self.name)

    def matches(self, segment: dict[str, str]) -> bool:
        return all(fnmatch.fnmatchcase(str(segment.get(k, "")), pattern) for k, pattern in self.segment.items())


_JUDGE_FIELDS = {f.name: f for f in fields(JudgeOptions)}
_EVALUATOR_FIELDS = {f.name for f in fields(Evaluator)} - {"judge"} | {"judge"}


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ConfigError(f"{where}: expected a {'whole ' if kind is int else ''}number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: expected 0 or more, got {value!r}")
        return kind(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def _judge(raw: Any, where: str) -> JudgeOptions:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'judge' must be a mapping with base_url and model")
    unknown = sorted(set(raw) - set(_JUDGE_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown judge key(s) {unknown}; known: {sorted(_JUDGE_FIELDS)}")
    for required in ("base_url", "model"):
        if not isinstance(raw.get(required), str) or not raw[required].strip():
            raise ConfigError(f"{where}: judge.{required} is required (text)")
    types = {"str": str, "int": int, "float": float, "bool": bool}
    values = {key: _typed(value, types[str(_JUDGE_FIELDS[key].type)], f"{where}: judge.{key}")
              for key, value in raw.items()}
    options = JudgeOptions(**values)
    if not options.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: judge.base_url must start with http:// or https://, got {options.base_url!r}")
    for key in ("timeout_s", "concurrency", "deadline_s", "max_tokens", "breaker_failures"):
        if not getattr(options, key) > 0:
            raise ConfigError(f"{where}: judge.{key} must be above 0")
    return options


def evaluator_from_dict(raw: dict[str, Any], defaults: dict[str, Any], where: str) -> Evaluator:
    """One evaluator from its YAML mapping, the file's defaults filled in."""
    merged = {**defaults, **raw}
    unknown = sorted(set(merged) - _EVALUATOR_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_EVALUATOR_FIELDS)}")
    name = merged.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-40 of a-z, 0-9 and _ starting with a letter "
                          f"(it becomes the metric eval_<name>), got {name!r}")
    where = f"{where} (evaluator {name!r})"
    check, rubric = merged.get("check", ""), merged.get("rubric", "")
    if bool(check) == bool(rubric):
        raise ConfigError(f"{where}: give exactly one of 'check' (offline: {', '.join(OFFLINE_CHECKS)}) "
                          f"or 'rubric' (a judge: {', '.join(RUBRICS)})")
    if check and check not in OFFLINE_CHECKS:
        raise ConfigError(f"{where}: check {check!r} is not one of {', '.join(OFFLINE_CHECKS)}")
    if rubric and rubric not in RUBRICS:
        raise ConfigError(f"{where}: rubric {rubric!r} is not one of {', '.join(RUBRICS)}")
    judge = _judge(merged["judge"], where) if merged.get("judge") is not None else None
    if rubric and judge is None:
        raise ConfigError(f"{where}: a judge needs 'judge' with base_url and model")
    if check and judge is not None:
        raise ConfigError(f"{where}: an offline check takes no 'judge'")
    prompt = merged.get("prompt", "")
    if rubric == "custom" and (not isinstance(prompt, str) or "{output}" not in prompt):
        raise ConfigError(f"{where}: the custom rubric needs 'prompt' with an {{output}} placeholder")
    segment = merged.get("segment") or {}
    if not isinstance(segment, dict) or set(segment) - set(SEGMENT_KEYS):
        raise ConfigError(f"{where}: 'segment' filters only {', '.join(SEGMENT_KEYS)}")
    types: dict[str, type] = {"enabled": bool, "sample_per_segment": int, "flag_below": float, "min_cosine": float,
                              "min_chars": int, "context_key": str, "description": str, "prompt": str}
    values = {key: _typed(merged[key], kind, f"{where}: {key}") for key, kind in types.items() if key in merged}
    evaluator = Evaluator(name=name, check=check, rubric=rubric, judge=judge,
                          segment={k: str(v) for k, v in segment.items()}, **values)
    if not 0 <= evaluator.flag_below <= 1:
        raise ConfigError(f"{where}: flag_below must be between 0 and 1")
    if evaluator.sample_per_segment < 1:
        raise ConfigError(f"{where}: sample_per_segment must be 1 or more")
    return evaluator


def parse_evaluators(text: str, source: str) -> list[Evaluator]:
    """Every evaluator in YAML text, enabled or not; raises :class:`ConfigError` naming ``source``."""
    import yaml

    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("evaluators", []), list):
        raise ConfigError(f"{source}: expected a mapping with an 'evaluators' list")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{source}: 'defaults' must be a mapping")
    evaluators = []
    for index, raw in enumerate(document.get("evaluators") or []):
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: evaluator #{index + 1} must be a mapping")
        evaluators.append(evaluator_from_dict(raw, defaults, f"{source}: evaluator #{index + 1}"))
    names = [e.name for e in evaluators]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{source}: evaluator names must be unique; repeated: {repeated}")
    return evaluators


def load_evaluators(path: str | None = None, *, enabled_only: bool = True) -> list[Evaluator]:
    """The evaluators in ``path``, else ``LLMSIGHT_EVALUATORS_FILE``, else the shipped defaults (all off)."""
    from llmsight import config
    from llmsight.evaluators import settings

    chosen = path if path is not None else config.resolve(settings.EVALUATORS_FILE, strict=True)
    if chosen:
        file = Path(chosen).expanduser()
        if not file.is_file():
            raise ConfigError(f"LLMSIGHT_EVALUATORS_FILE={chosen!r}: no such file")
        found = parse_evaluators(file.read_text(encoding="utf-8"), str(file))
    else:
        default = resources.files("llmsight.evaluators").joinpath("default-evaluators.yaml")
        found = parse_evaluators(default.read_text(encoding="utf-8"), "default-evaluators.yaml")
    return [e for e in found if e.enabled or not enabled_only]
