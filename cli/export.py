"""``llmsight export``: the weekly quality-review export (Parquet, CSV and a self-contained HTML report)."""

from __future__ import annotations

import json

import typer


def export(
    week: str = typer.Option(None, "--week", help="ISO week, e.g. 2026-W47; default the last complete week."),
    formats: str = typer.Option("parquet,csv,html", "--format", help="Comma-separated: parquet, csv, html."),
    out: str = typer.Option(None, "--out", help="Output folder; default LLMSIGHT_EXPORT_DIR (~/.llmsight/exports)."),
    sample_size: int = typer.Option(None, "--sample-size", min=0,
                                    help="Random calls in the review sample besides every flagged one; "
                                         "default LLMSIGHT_EXPORT_SAMPLE_SIZE (200)."),
    evidently: bool = typer.Option(False, "--evidently", help="Add Evidently's text drift report to the HTML "
                                                             "(slower)."),
    topics: bool = typer.Option(True, "--topics/--no-topics", help="Cluster this week's and last week's inputs "
                                                                   "with the embedding model for the drift summary."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
    database: str = typer.Option(None, "--database", help="Database name; default from the URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the files and row counts as one JSON line."),
) -> None:
    """Export one ISO week for the quality review into OUT/<week>/. Rerunning a week rewrites the same bytes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llmsight import config, store
    from llmsight.review import settings as review_settings
    from llmsight.review.export import export_week, parse_formats
    from llmsight.review.weeks import parse_week

    chosen_week = parse_week(week)
    chosen_formats = parse_formats(formats)
    out_dir = config.resolve(review_settings.EXPORT_DIR, out, strict=True)
    client = store.connect(url, database)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done)

        result = export_week(client, chosen_week, out_dir, formats=chosen_formats, sample_size=sample_size,
                             progress=progress, evidently=evidently, topics_by_week=topics)
    if as_json:
        typer.echo(json.dumps({"week": result.week.label, "directory": str(result.directory),
                               "files": sorted(result.files), "rows": result.rows,
                               "seconds": round(result.seconds, 2), "provisional": result.provisional,
                               "feedback_until": result.feedback_until.isoformat()
                               if result.feedback_until else None}))
        return
    typer.echo(f"export: {result.week.label} written to {result.directory} in {result.seconds:.1f} s")
    for name in sorted(result.files):
        typer.echo(f"  {name}")
    typer.echo("  rows: " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()))
    if result.feedback:
        typer.echo(f"  {result.feedback}")
