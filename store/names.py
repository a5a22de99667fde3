"""Metric names and segment keys of the ``metrics`` table: the contract between analyzers, alerts, dashboard and review.

A metric row is one (window, granularity, segment, metric). The segment is
service × name × model × prompt_version. Granularities: ``1m`` (the scheduler's window), ``1h``, ``1d``.
"""

GRANULARITIES = ("1m", "1h", "1d")

# A segment: the columns every metric, alert and silence row is keyed by. A feature is a segment
# without its prompt version (a new version falls back to its feature's history).
SEGMENT_KEYS = ("service", "name", "model", "prompt_version")
FEATURE_KEYS = ("service", "name", "model")

# Operations, from llm_call events.
VOLUME = "volume"                       # calls in the window (value = n)
ERROR_RATE = "error_rate"               # share of calls with an error
LATENCY_P50 = "latency_p50_ms"
LATENCY_P95 = "latency_p95_ms"
LATENCY_P99 = "latency_p99_ms"
TTFT_P50 = "ttft_p50_ms"
TOKENS_IN = "tokens_in"                 # sum
TOKENS_OUT = "tokens_out"               # sum
COST = "cost_usd"                       # sum
COST_PER_CALL = "cost_per_call_usd"
OUTPUT_CHARS = "output_chars_mean"
REFUSAL_RATE = "refusal_rate"           # share of outputs that refuse ("I can't help with that")

# Safety.
TOXICITY_OUTPUT = "toxicity_rate_output"  # share of outputs scored above the toxicity threshold
TOXICITY_INPUT = "toxicity_rate_input"

# Feedback, joined to calls by trace_id.
ACCEPTANCE = "acceptance_rate"          # accepted / feedback with accepted set; p_value vs baseline
SCORE_MEAN = "score_mean"
EDIT_RATE = "edit_rate"                 # share of feedback with an edited_output
FEEDBACK_N = "feedback_n"

# Drift: value = score, threshold, p_value; details = JSON explanation (topics grown/shrunk, examples).
DRIFT_INPUT = "drift_input"
DRIFT_OUTPUT = "drift_output"
# Sequential drift evidence (what the default drift alerts read): value = CUSUM / its alarm level
# (alarm at 1.0, so threshold = 1.0); details: cusum, limit, z, since, alarm_since, grown_topic.
# One row per drift row, at every granularity (1m, 1h, 1d); see llmsight.analyzers.drift.
DRIFT_INPUT_EVIDENCE = "drift_input_evidence"
DRIFT_OUTPUT_EVIDENCE = "drift_output_evidence"

# Analysis itself: how far it is behind, on the segment of llmsight's own analysis (written by the
# scheduler; the default rules alert on it, the dashboard shows a banner when it is behind).
ANALYSIS_LAG_SECONDS = "analysis_lag_seconds"   # now minus the end of the newest analysed base window
ANALYSIS_LAG_WINDOWS = "analysis_lag_windows"   # whole base windows since then (0 or 1 when keeping up)
ANALYSIS_SEGMENT = {"service": "llmsight", "name": "analysis", "model": "", "prompt_version": ""}

# Online evaluators (llmsight.evaluators): one metric per evaluator, eval_<its name>. value = the mean
# score of the window's evaluated calls (0..1, 1 the best), n = calls scored; details: flagged share.
EVAL_PREFIX = "eval_"


def eval_metric(evaluator: str) -> str:
    """The metric name of an evaluator's scores, e.g. ``eval_helpfulness``."""
    return f"{EVAL_PREFIX}{evaluator}"
