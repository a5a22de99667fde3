"""The ``llmsight`` command line: one entry point, typer + rich, ``--help`` on every command.

Each service registers its commands here with one line; the command bodies live next to the
service (``cli/<service>.py``), so this file stays a table of contents.
"""

from __future__ import annotations

import logging
import sys

try:
    import typer
except ImportError:  # the thin SDK install has no CLI dependencies
    typer = None  # type: ignore[assignment]


def _build() -> typer.Typer:
    from llmsight.cli import analyzers, bench, db, demo, up

    app = typer.Typer(
        name="llmsight",
        help="llmsight: monitor LLM features in production (drift, toxicity, acceptance, latency, cost).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def main_options(
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail."),
    ) -> None:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
        )
        if version:
            from llmsight import __version__

            typer.echo(f"llmsight {__version__}")
            raise typer.Exit(0)

    app.add_typer(db.app, name="db")
    app.add_typer(bench.app, name="bench")
    from llmsight.cli.store import app as store_app  # store serve: the chdb store over HTTP
    app.add_typer(store_app, name="store")
    from llmsight.cli.collector import collector  # the collector service
    app.command(name="collector")(collector)
    app.command(name="analyzers")(analyzers.analyzers)
    from llmsight.cli.silences import register as register_silences  # alerts silence|silences|unsilence
    register_silences(analyzers.alerts_app)
    app.add_typer(analyzers.alerts_app, name="alerts")
    app.command(name="up")(up.up)
    app.command(name="demo")(demo.demo)
    from llmsight.cli.dashboard import dashboard  # the Streamlit dashboard
    app.command(name="dashboard")(dashboard)
    from llmsight.cli.export import export  # the weekly quality-review export
    app.command(name="export")(export)
    from llmsight.cli.audit import audit  # the loss audit
    app.command(name="audit")(audit)
    from llmsight.cli.deadletters import app as dead_letters_app  # dead-letters replay
    app.add_typer(dead_letters_app, name="dead-letters")
    return app


def main() -> None:
    if typer is None:
        sys.stderr.write(
            "llmsight: the command line needs the server extra: pip install 'llmsight[server]'\n"
        )
        raise SystemExit(2)
    from llmsight.errors import LlmsightError

    try:
        _build()(standalone_mode=True)
    except LlmsightError as exc:
        sys.stderr.write(f"llmsight: error: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
