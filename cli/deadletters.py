"""``llmsight dead-letters replay``: re-submit dead letters after an upgrade (see ``collector/replay.py``)."""

from __future__ import annotations

import datetime as dt
import json
import re

import typer

app = typer.Typer(help="Dead letters: messages the collector could not store, with the reason.",
                  no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([mhd])$")


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO 8601 date or time (UTC when naive)."""
    if not text:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    duration = _DURATION.match(text.strip())
    if duration:
        amount, unit = int(duration.group(1)), duration.group(2)
        return now - dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected 30m, 2h, 7d or an ISO 8601 date/time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


@app.command()
def replay(
    since: str = typer.Option(None, "--since", help="Only dead letters received since then: 30m, 2h, 7d or ISO 8601."),
    reason: str = typer.Option(None, "--reason", help="Only this kind (unknown_schema_version, ts_out_of_range, "
                               "rejected, bad_schema, bad_json, ...) or dead letters whose reason contains this text."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only: say what would be stored, store nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON line."),
) -> None:
    """Re-submit dead letters through the collector's validation into the store (after an upgrade).

    What is valid now is stored; what fails again stays a dead letter (nothing is inserted twice);
    running it again changes nothing (dedup by token and event_id).
    """
    from llmsight import config, store
    from llmsight.collector.replay import replay as run_replay
    from llmsight.store import settings as store_settings

    client = store.connect()
    store.migrate(client, cluster=config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None)
    report = run_replay(client, parse_since(since), reason, dry_run=dry_run)
    if json_out:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True))
        return
    verb = "would store" if dry_run else "stored"
    stored = ", ".join(f"{n} {table}" for table, n in report.stored.items() if n) or "nothing"
    failed = ", ".join(f"{n} {kind}" for kind, n in sorted(report.failed_again.items())) or "none"
    typer.echo(f"dead-letters: {report.selected} selected; {verb} {stored}; failing again (left in "
               f"dead_letters): {failed}")
