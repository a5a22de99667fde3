"""The weekly quality review: the export a team reads once a week.

* ``weeks``: ISO weeks and the grace period for late feedback;
* ``export``: Parquet tables, the CSV review sample and the run of a whole week (``llmsight export``
  and the weekly job);
* ``summary``: every figure of the report, the week against the week before;
* ``html``: the self-contained report;
* ``labels``: reviewers' labels (``review_labels``) and the review queue; ``imports``: ``llmsight review
  import``, the filled-in review sample read back all or nothing; ``precision``: the monitors (toxicity flag,
  evaluators) scored against the reviewers, and a suggested toxicity threshold; ``dataset``: ``llmsight
  dataset export``, regression, SFT and preference-pair JSONL from production calls.

Flow: ``llmsight.store`` ← ``llmsight.review`` (it may use the signals' helpers for topics and
verdicts, and the toxicity scorer to score reviewed outputs); it never imports alerting, the scheduler or the dashboard. Its settings are in ``settings.py``.
"""
