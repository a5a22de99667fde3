"""``llmsight alerts silence|silences|unsilence``: pause an alert's notifications for a while.

The commands are added to the ``alerts`` group of :mod:`llmsight.cli.analyzers` by :func:`register`.
Bad input (a duration that cannot be one, a rule the rules file does not have) is refused before
the store is opened, with typer's usage error (exit code 2).
"""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from llmsight.alerts.silences import Silence


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container: the option is then required in practice
        return ""


def silence(
    rule: str = typer.Argument(..., help="The rule's name (see the rules file, e.g. output-toxicity)."),
    service: str = typer.Option("", "--service", help="Only this service (default: any)."),
    name: str = typer.Option("", "--name", help="Only this monitored function name (default: any)."),
    model: str = typer.Option("", "--model", help="Only this model (default: any)."),
    prompt_version: str = typer.Option("", "--prompt-version", help="Only this prompt version (default: any)."),
    duration: str = typer.Option(..., "--for", help="How long: 30m, 2h, 1d (at most 30d)."),
    reason: str = typer.Option("", "--reason", help="Why, for the others on call."),
    by: str = typer.Option(_who(), "--by", help="Who silences (default: your user name)."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the silence as one JSON object."),
) -> None:
    """Silence a rule's alerts (optionally on one segment) for a while: recorded, not notified."""
    from llmsight import store
    from llmsight.alerts.rules import load_rules
    from llmsight.alerts.silences import check_rule, create_silence, parse_silence_for
    from llmsight.errors import ConfigError

    try:
        length = parse_silence_for(duration)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    rules = load_rules()
    try:
        check_rule(rule, rules)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="RULE") from None
    if not by.strip():
        raise typer.BadParameter("say who silences", param_hint="--by")
    segment = {"service": service, "name": name, "model": model, "prompt_version": prompt_version}
    made = create_silence(store.connect(url), rule, segment, length, by, reason, rules=rules)
    if as_json:
        typer.echo(json.dumps(_as_dict(made, made.created_at)))
        return
    typer.echo(f"alerts: silenced {made.describe()} until {_when(made.until)} ({duration.strip()}) "
               f"as {made.silence_id}")


def silences(
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The active silences, soonest to end first, with the time left."""
    from llmsight import store
    from llmsight.alerts.silences import load_silences, time_left

    now = datetime.now(timezone.utc)
    active = load_silences(store.connect(url), now)
    if not active and not as_json:
        typer.echo("alerts: no active silences")
    for s in active:
        if as_json:
            typer.echo(json.dumps(_as_dict(s, now)))
        else:
            reason = f"  ({s.reason})" if s.reason else ""
            typer.echo(f"{s.silence_id}  {time_left(s, now):>8} left  until {_when(s.until)}  {s.describe()}  "
                       f"by {s.created_by}{reason}")


def unsilence(
    silence_id: str = typer.Argument(..., help="The silence's id (see `llmsight alerts silences`)."),
    by: str = typer.Option(_who(), "--by", help="Who ends it (default: your user name)."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
) -> None:
    """End a silence now; a still-firing alert it held back notifies at the next evaluation."""
    from llmsight import store
    from llmsight.alerts.silences import remove_silence
    from llmsight.errors import LlmsightError

    try:
        removed = remove_silence(store.connect(url), silence_id, by)
    except LlmsightError as exc:
        raise typer.BadParameter(str(exc), param_hint="ID") from None
    typer.echo(f"alerts: silence {removed.silence_id} ({removed.describe()}) ended by {removed.removed_by}")


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _as_dict(s: Silence, now: datetime) -> dict[str, object]:
    from llmsight.alerts.silences import time_left

    return {"silence_id": s.silence_id, "rule": s.rule, "segment": s.segment, "until": s.until.isoformat(),
            "left": time_left(s, now), "created_by": s.created_by, "reason": s.reason,
            "created_at": s.created_at.isoformat()}


def register(alerts_app: typer.Typer) -> None:
    """Add the three commands to the ``llmsight alerts`` group (once, however often the app is built)."""
    present = {c.name for c in alerts_app.registered_commands}
    for command_name, function in (("silence", silence), ("silences", silences), ("unsilence", unsilence)):
        if command_name not in present:
            alerts_app.command(command_name)(function)
