"""``llmsight collector``: the collector as its own process (Kafka or spool into the store)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import typer

log = logging.getLogger("llmsight.collector")


def collector(
    source: str = typer.Option(None, "--source", help="kafka://host:9092[,host:9092]/topic or file:///path/to/spool; "
                               "default LLMSIGHT_SINK (the variable the SDK reads)."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit once the source has nothing new."),
    group: str = typer.Option(None, "--group", help="Kafka consumer group; default LLMSIGHT_COLLECTOR_GROUP."),
) -> None:
    """Read events from Kafka or the spool, validate them and store them in ClickHouse.

    The store is LLMSIGHT_CLICKHOUSE_URL. SIGTERM finishes the batch in hand, commits it and exits.
    """
    from llmsight import config, store
    from llmsight.cli import stopping
    from llmsight.collector import Collector, source_from_url
    from llmsight.store import settings as store_settings

    url = source or config.resolve(config.SINK, strict=True)
    started = time.perf_counter()
    # The store first: a collector that cannot write must not join a consumer group.
    client = store.connect()
    applied = store.migrate(client, cluster=config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None)
    if applied:
        log.info("collector: applied migrations %s", ", ".join(applied))
    options: dict[str, Any] = {"group_id": group} if group and url.startswith("kafka://") else {}
    the_source = source_from_url(url, **options)
    the_collector = Collector(the_source, client)

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("collector: %s received; finishing the batch in hand", signal.Signals(signum).name)
        stopping.arm("the collector")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if until_idle:
        stats = the_collector.run_until_idle(stop)
    else:
        stats = the_collector.run(stop)
    elapsed = time.perf_counter() - started
    typer.echo(f"collector: {stats.messages} messages in {elapsed:.1f} s: {stats.events} events, "
               f"{stats.feedback} feedback, {stats.dead_letters} dead letters")
