"""``llmsight db ...``: the store's schema."""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="Create or upgrade the ClickHouse schema; erase one user's data.", no_args_is_help=True)


@app.command()
def migrate(
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL or chdb://~/.llmsight/db."),
    database: str = typer.Option(None, "--database", help="Database name; default from the URL, else 'llmsight'."),
) -> None:
    """Create or upgrade the schema. Safe to run again: applied migrations are skipped."""
    from llmsight import config, store
    from llmsight.store import settings as store_settings

    started = time.perf_counter()
    client = store.connect(url, database)
    cluster = config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None
    applied = store.migrate(client, cluster=cluster)
    elapsed = (time.perf_counter() - started) * 1000
    target = store.parse_url(url, database).display()
    if applied:
        typer.echo(f"db: applied {', '.join(applied)} to {target} in {elapsed:.0f} ms")
    else:
        typer.echo(f"db: {target} is up to date ({elapsed:.0f} ms)")


def embedding_keys(model: str, text: str) -> list[str]:
    """The ``embeddings`` keys a text can have: the whole text, and the sentences the toxicity scorer embeds."""
    from llmsight.analyzers.embeddings import text_hash
    from llmsight.analyzers.toxicity import normalize, split_sentences

    texts = {text, normalize(text), *split_sentences(normalize(text))}
    return [text_hash(model, t) for t in texts if t]


@app.command()
def erase(
    user_id: str = typer.Option(..., "--user-id", help="The user id the SDK recorded (llmsight.context(user_id=...))."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be removed."),
    export_dir: str = typer.Option(None, "--export-dir", help="Export folder to clean too; default LLMSIGHT_EXPORT_DIR."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON line."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL or chdb://~/.llmsight/db."),
    database: str = typer.Option(None, "--database", help="Database name; default from the URL, else 'llmsight'."),
) -> None:
    """Remove one user's calls, feedback, embeddings, quoted examples and dead letters, and their rows
    in the weekly export files; print what was removed. Events still in Kafka or a spool are not reached."""
    import json
    from pathlib import Path

    from llmsight import config, store
    from llmsight.review import settings as review_settings
    from llmsight.store import erase as store_erase
    from llmsight.store import settings as store_settings

    if not user_id.strip():
        raise typer.BadParameter("give the id of the user to erase", param_hint="--user-id")
    client = store.connect(url, database, create_database=False)
    cluster = config.resolve(store_settings.CLICKHOUSE_CLUSTER, strict=True) or None
    subject = store_erase.find_subject(client, user_id)
    report = store_erase.erase_user(client, user_id, dry_run=dry_run, cluster=cluster,
                                    embedding_keys=embedding_keys, subject=subject)
    folder = config.resolve(review_settings.EXPORT_DIR, export_dir, strict=True)
    report.files = store_erase.erase_exports(folder, subject, dry_run=dry_run)
    report.export_dir = str(Path(folder).expanduser())
    if json_out:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True))
        return
    for line in report.lines():
        typer.echo(line)
    if any(f.action == "removed" and f.where.endswith(".html") for f in report.files) and not dry_run:
        typer.echo("  rerun `llmsight export --week W` to rebuild a removed report.html")
