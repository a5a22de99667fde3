"""The signals: what each window of traffic says, as metric rows.

Pure functions on tiny inputs, and the window analysis that does the I/O around them:

* ``embeddings`` (MiniLM, cached by text hash), ``drift`` (the embedding drift test) and ``topics``
  (which topics grew or shrank: the explanation a drift row carries);
* ``toxicity`` (the shipped head, or a plugged-in model), ``acceptance`` (rates and the regression
  test), ``operations`` (latency, errors, tokens, cost, refusals);
* ``windows`` (what a window and its reference hold, read from the store; the metric rows written
  back) and ``window_metrics`` (one window, every segment, every signal).

Flow: ``llmsight.store`` ← ``llmsight.analyzers`` ← ``llmsight.alerts``. The scheduler
(``llmsight.scheduler``) decides when a window runs; this room never imports alerting, the review,
the scheduler or the dashboard. Its settings are in ``settings.py``.
"""
