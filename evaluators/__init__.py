"""Online evaluators: verdicts on a sample of calls per segment and window, as rows and metrics.

* ``config``: the YAML file (``LLMSIGHT_EVALUATORS_FILE``, next to the alert rules; the shipped
  ``default-evaluators.yaml`` turns every evaluator off) read into small typed objects;
* ``offline``: checks that need no endpoint: answer relevance (prompt-answer cosine on the cached
  embeddings), empty or truncated answers, language mismatch (``language``), leaked personal data or
  secrets (the SDK's redaction patterns);
* ``judge``: an LLM judge on any OpenAI-compatible endpoint (the ``openai`` client with ``base_url``),
  with rubric templates, robust parsing of (score, label, reason), a daily token and cost cap,
  retries with back-off and a circuit breaker;
* ``runner``: one window at a time: the deterministic sample, the offline checks, the judge calls in a
  thread pool with a concurrency limit and a deadline, the ``evaluations`` rows, and the
  ``eval_<evaluator>`` metric rows aggregated from them.

The room imports the store, the SDK's redaction and the analyzers' embedding cache; only the
scheduler (which runs it as its own job), the CLI and the benchmarks import it.
"""
