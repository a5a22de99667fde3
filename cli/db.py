"""``llmsight db ...``: the store's schema."""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="Create or upgrade the ClickHouse schema.", no_args_is_help=True)


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
