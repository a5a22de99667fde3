"""The collector: Kafka and spool sources into ClickHouse, at least once, deduplicated, with dead letters.

    from llmsight.collector import Collector, source_from_url
    collector = Collector(source_from_url("kafka://localhost:9092/llmsight.events"), store.connect())
    collector.run(stop_event)          # or collector.run_until_idle()

It imports the SDK (schema, sinks' URL forms, spool) and the store, never analysis, alerting, the
review or the dashboard. Its settings are in ``settings.py``.
"""

from llmsight.collector.collector import Collector, CollectorStats
from llmsight.collector.source import Source, source_from_url

__all__ = ["Collector", "CollectorStats", "Source", "source_from_url"]
