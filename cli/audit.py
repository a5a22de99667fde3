"""``llmsight audit``: the loss audit, per producer (SDK process) and hour, sent against stored."""

from __future__ import annotations

import datetime as dt
import json

import typer

from llmsight.cli.deadletters import parse_since


def audit(
    start: str = typer.Option("24h", "--from", help="Start: 30m, 2h, 7d (ago) or ISO 8601 (UTC); default 24h ago."),
    end: str = typer.Option(None, "--to", help="End (exclusive): ISO 8601 or 30m/2h/7d ago; default now."),
    json_out: bool = typer.Option(False, "--json", help="Print the hours, totals and verdict as one JSON line."),
    hours: bool = typer.Option(True, "--hours/--totals", help="Show each hour, or only the totals per producer."),
) -> None:
    """Compare, per producer and hour, what each SDK process sent (its heartbeats) with what is stored.

    missing = sent - stored - dead letters; 0 means nothing was lost. Dropped, spilled and failed are
    the producer's own counts (queue full, spilled while Kafka was away, could not be sent).
    Exits 1 when a producer's total is not balanced.
    """
    from llmsight import store
    from llmsight.store import queries

    now = dt.datetime.now(dt.timezone.utc)
    begin = parse_since(start, now) or now - dt.timedelta(days=1)
    finish = parse_since(end, now) or now
    client = store.connect()
    frame = queries.producer_audit(client, begin, finish)
    totals = queries.producer_audit_totals(frame)
    unattributed = queries.unattributed_rows(client, begin, finish)
    balanced = bool((totals["missing"] == 0).all()) if not totals.empty else True
    if json_out:
        typer.echo(json.dumps({
            "from": begin.isoformat(), "to": finish.isoformat(), "balanced": balanced,
            "hours": json.loads(frame.to_json(orient="records", date_format="iso")),
            "totals": json.loads(totals.to_json(orient="records")),
            "unattributed": json.loads(unattributed.to_json(orient="records")),
        }, sort_keys=True))
    else:
        _print(frame, totals, unattributed, begin, finish, balanced, hours)
    if not balanced:
        raise typer.Exit(1)


def _print(frame, totals, unattributed, begin, finish, balanced, hours) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    console.print(f"loss audit {begin.isoformat(timespec='seconds')} .. {finish.isoformat(timespec='seconds')}")
    if totals.empty:
        console.print("no producer heartbeats in this range (SDKs send one now and then, with their counters)")
        return
    counts = ["sent", "stored", "dead_letters", "missing", "dropped", "spilled", "failed"]
    if hours:
        table = Table("producer", "service", "hour (UTC)", *counts, title="per hour")
        for row in frame.itertuples(index=False):
            table.add_row(row.producer_id, row.service, row.hour.strftime("%Y-%m-%d %H:00"),
                          *(str(getattr(row, c)) for c in counts))
        console.print(table)
    table = Table("producer", "service", "host", "pid", *counts, "", title="per producer (whole range)")
    for row in totals.itertuples(index=False):
        table.add_row(row.producer_id, row.service, row.host, str(row.pid), *(str(getattr(row, c)) for c in counts),
                      "ok" if row.missing == 0 else "LOSS" if row.missing > 0 else "EXTRA")
    console.print(table)
    for row in unattributed.itertuples(index=False):
        console.print(f"not attributed (no producer_id): {row.rows} rows of service {row.service or '(feedback)'}")
    console.print("balanced: every producer's sent = stored + dead letters" if balanced else
                  "NOT balanced: see missing (a single hour may differ near its end; totals must not)")
