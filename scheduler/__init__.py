"""The analyzers service: when each window is analysed, then alerted on, and when the weekly review runs.

``service`` runs the APScheduler jobs (``llmsight analyzers``, and a thread of ``llmsight up``): each
closed window through :mod:`llmsight.analyzers.window_metrics`, its rows through the alert engine
(:mod:`llmsight.alerts.engine`), the hourly and daily rollups, and the weekly export
(:mod:`llmsight.review.export`). It is the one room that wires signals, alerting and review together;
only the CLI imports it. Its settings are in ``settings.py``.
"""
