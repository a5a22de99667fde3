"""The weekly quality review: the export a team reads once a week.

* ``weeks``: ISO weeks and the grace period for late feedback;
* ``export``: Parquet tables, the CSV review sample and the run of a whole week (``llmsight export``
  and the weekly job);
* ``summary``: every figure of the report, the week against the week before;
* ``html``: the self-contained report.

Flow: ``llmsight.store`` ← ``llmsight.review`` (it may use the signals' pure helpers for topics and
verdicts); it never imports alerting, the scheduler or the dashboard. Its settings are in ``settings.py``.
"""
