"""Alerting: rules over the metric rows, the alert state machine, silences and notifications.

* ``rules``: the YAML rules (``default-rules.yaml`` ships here; ``LLMSIGHT_RULES`` replaces it);
* ``engine``: pending → firing → resolved per rule and segment, acknowledgements, and the rows of
  the ``alerts`` table (every write of alert state goes through here, the dashboard's included);
* ``silences``: pausing a rule's notifications for a while (written here, for the CLI and the dashboard);
* ``notify``: the JSON webhook, Slack and e-mail, on a background thread that never blocks evaluation;
* ``mail``: the alert e-mail (SMTP settings checked at start, the message, one delivery with its deadline);
* ``evidence``: what changed, read from an alert's evidence the same way by every screen (the grown
  topic; a score beside its own critical value, the p-value apart).

Flow: ``llmsight.store`` ← ``llmsight.analyzers`` ← ``llmsight.alerts``. Alerting reads the metric
rows the signals wrote and the latest alert states through ``llmsight.store.queries``; it never
imports the review, the scheduler or the dashboard. Its settings are in ``settings.py``.
"""
