"""``llmsight analyzers``: the analyzers service, one window at a time or on a schedule; ``llmsight alerts``."""

from __future__ import annotations

import json
import logging
import signal
from datetime import datetime, timezone

import typer

log = logging.getLogger("llmsight.analyzers")


def _parse_time(raw: str, option: str) -> datetime:
    from llmsight.schema import parse_ts

    try:
        return parse_ts(raw)
    except ValueError:
        raise typer.BadParameter(f"{raw!r} is not an ISO 8601 time such as 2026-11-20T00:00:00Z",
                                 param_hint=option) from None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def analyzers(
    once: bool = typer.Option(False, "--once", help="Analyze the windows that are due, evaluate alerts, exit."),
    backfill: tuple[str, str] | None = typer.Option(None, "--backfill", metavar="FROM TO",
                                             help="Recompute every whole window between two ISO 8601 UTC times "
                                                  "(minute windows, hours and days; no alerts), then exit."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    role: str = typer.Option("all", "--role",
                             help="With LLMSIGHT_ANALYSIS_QUEUE: all (worker and coordinator candidate), worker "
                                  "or coordinator."),
) -> None:
    """Run the analyzers: drift, toxicity, acceptance and operations per window, then the alert rules.

    Without options it runs on a schedule (LLMSIGHT_WINDOW_SECONDS windows, hourly and daily
    rollups) and serves /healthz, /readyz and /metrics on LLMSIGHT_ANALYZERS_HTTP_PORT. With
    LLMSIGHT_ANALYSIS_QUEUE=kafka://host:9092/topic, every replica started this way shares the
    windows' work units through Kafka and one of them (chosen by Kafka) coordinates.
    """
    from llmsight import config, store
    from llmsight.scheduler.roles import QueueSettings
    from llmsight.scheduler.service import AnalyzerService
    from llmsight.store import settings as store_settings

    start_raw, end_raw = backfill or (None, None)
    queue = QueueSettings.from_env()  # fails fast on a bad queue URL before touching the store
    client = store.connect(url)
    store.migrate(client, cluster=config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None)
    if queue is not None and not once and start_raw is None:
        _run_replica(client, queue, role)
        return
    service = AnalyzerService(client)  # reads and checks every setting and the rules: fails fast
    if start_raw is not None:
        start, end = _parse_time(start_raw, "--backfill"), _parse_time(end_raw, "--backfill")
        if end <= start:
            raise typer.BadParameter("TO must come after FROM", param_hint="--backfill")
        count = service.backfill(start, end)
        typer.echo(f"analyzers: backfilled {count} windows from {start.isoformat()} to {end.isoformat()}")
        service.shutdown()
        return
    if once:
        windows = service.run_due()
        service.shutdown()
        typer.echo(f"analyzers: {len(windows)} windows analyzed")
        return
    # SIGTERM (Kubernetes) stops the blocking scheduler like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        service.start(blocking=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        service.shutdown()


def _run_replica(client: object, queue: object, role: str) -> None:
    import threading

    from llmsight.scheduler.replica import Replica

    replica = Replica(client, queue, role=role)  # type: ignore[arg-type]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    replica.start()
    try:
        replica.wait(stop)
    except KeyboardInterrupt:
        pass
    finally:
        replica.shutdown()


alerts_app = typer.Typer(help="List, acknowledge and silence alerts.", no_args_is_help=True)


@alerts_app.command("list")
def list_alerts(
    state: str = typer.Option("firing", "--state", help="firing, pending, resolved or all."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The current alerts (the latest state of each rule and segment)."""
    from llmsight import store
    from llmsight.alerts.engine import load_states
    from llmsight.alerts.silences import load_silences, matching, time_left

    client = store.connect(url)
    now = datetime.now(timezone.utc)
    active = load_silences(client, now)
    states = sorted(load_states(client).values(), key=lambda s: (s.state, s.rule))
    for st in states:
        if state != "all" and st.state != state:
            continue
        segment = "/".join(st.segment.values())
        silence = matching(active, st.rule, st.segment, now) if st.state in ("pending", "firing") else None
        if as_json:
            typer.echo(json.dumps({"alert_id": st.alert_id, "rule": st.rule, "state": st.state,
                                   "severity": st.severity, "segment": st.segment, "value": st.value,
                                   "acked_by": st.acked_by, "silenced_by": silence.silence_id if silence else None,
                                   "silenced_until": silence.until.isoformat() if silence else None},
                                  default=str))
        else:
            acked = f" (acked by {st.acked_by})" if st.acked_by else ""
            silenced = (f" (silenced by {silence.silence_id}, {time_left(silence, now)} left)" if silence else "")
            typer.echo(f"{st.alert_id}  {st.state:8} {st.severity:8} {st.rule:18} {segment}  "
                       f"value={st.value}{acked}{silenced}")


@alerts_app.command("ack")
def ack(
    alert_id: str = typer.Argument(..., help="The alert's id (see `llmsight alerts list`)."),
    by: str = typer.Option(..., "--by", help="Who acknowledges."),
    note: str = typer.Option("", "--note", help="What is being done about it."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
) -> None:
    """Acknowledge an alert: no more re-notifications until it resolves."""
    from llmsight import store
    from llmsight.alerts.engine import acknowledge

    acknowledge(store.connect(url), alert_id, by, note, datetime.now(timezone.utc))
    typer.echo(f"alerts: {alert_id} acknowledged by {by}")
