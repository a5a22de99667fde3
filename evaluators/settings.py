"""The evaluators' settings: the YAML file of evaluators.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the scheduler reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import define, parse_text

EVALUATORS_FILE = define("LLMSIGHT_EVALUATORS_FILE", "", parse_text,
                         "Path to a YAML file of online evaluators (LLM judges, offline checks); empty means the "
                         "shipped default-evaluators.yaml, in which every evaluator is off.", "evaluators")
