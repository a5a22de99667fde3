"""``llmsight review import`` (reviewers' labels back from the weekly CSV) and ``llmsight dataset export``
(datasets from production calls for regression tests and fine-tuning)."""

from __future__ import annotations

import datetime as dt
import getpass
import json

import typer

from llmsight.cli.deadletters import parse_since

review_app = typer.Typer(help="The review loop: labels from reviewers back into the store.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets from production calls (JSON Lines).", no_args_is_help=True)


@review_app.command("import")
def import_labels(
    path: str = typer.Argument(..., help="The week's review_sample.csv with the reviewer columns filled in."),
    reviewer: str = typer.Option(None, "--reviewer", help="Whose labels these are; default the user running this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row, store nothing."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    database: str = typer.Option(None, "--database", help="Database name; default from the URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as one JSON line."),
) -> None:
    """Import reviewers' verdicts, tags, edited answers and notes: every row, or (any row bad) none."""
    from llmsight import store
    from llmsight.review.imports import import_file
    from llmsight.review.labels import parse_reviewer

    who = parse_reviewer(reviewer if reviewer is not None else getpass.getuser())
    result = import_file(store.connect(url, database), path, who, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps({"file": str(result.path), "labels": len(result.labels), "skipped": result.skipped,
                               "rows": result.rows, "dry_run": dry_run, "reviewer": who}))
        return
    verb = "checked (dry run, nothing stored)" if dry_run else "imported"
    typer.echo(f"review import: {len(result.labels)} label(s) {verb} as {who}; "
               f"{result.skipped} row(s) without a reviewer verdict skipped ({result.rows} rows in {result.path})")


@dataset_app.command("export")
def export_dataset(
    start: str = typer.Option("7d", "--from", help="Start: 30m, 2h, 7d (ago) or ISO 8601 (UTC); default 7d ago."),
    end: str = typer.Option(None, "--to", help="End (exclusive): ISO 8601 or 30m/2h/7d ago; default now."),
    segment: list[str] = typer.Option([], "--segment", help="Only this segment: service/name/model/prompt_version "
                                      "(trailing parts optional, * for any) or service=...,name=...; repeatable."),
    out: str = typer.Option("./llmsight-dataset", "--out", help="Output folder."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    database: str = typer.Option(None, "--database", help="Database name; default from the URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as one JSON line."),
) -> None:
    """Write regression.jsonl, sft.jsonl (accepted answers) and preferences.jsonl (edits) from the calls, redacted."""
    from llmsight import store
    from llmsight.review import dataset

    now = dt.datetime.now(dt.timezone.utc)
    begin = parse_since(start, now) or now - dt.timedelta(days=7)
    finish = parse_since(end, now) or now
    result = dataset.export_dataset(store.connect(url, database), begin, finish, out, segments=segment)
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    typer.echo(f"dataset: written to {result.directory}")
    for line in result.lines():
        typer.echo(f"  {line}")
