"""The ``llmsight`` command line: one entry point, typer + rich, ``--help`` on every command.

Each service registers its commands here with one line; the command bodies live next to the
service (``cli/<service>.py``), so this file stays a table of contents.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback

try:
    import typer
except ImportError:  # the thin SDK install has no CLI dependencies
    typer = None  # type: ignore[assignment]


# scheme://user:password@ and password=... in a message or a log line: the password is replaced by ***.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@", re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(?P<head>\b(?:password|passwd|pwd|secret|token)=)[^&\s'\"]+", re.IGNORECASE)
# ClickHouse's codes for a table or database that does not exist: the store was never migrated.
_MISSING_TABLES = ("UNKNOWN_TABLE", "UNKNOWN_DATABASE", "Code: 60.", "Code: 81.")

_verbose = False


def mask_secrets(text: str) -> str:
    """``text`` with the passwords of URLs (``scheme://user:pass@host``) and ``password=`` values masked."""
    return _PASSWORD_PARAM.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***@", text))


class MaskingFormatter(logging.Formatter):
    """A log formatter that never prints a password found in a URL (store, Kafka, webhook)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


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
        ctx: typer.Context,
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
        verbose: bool = typer.Option(False, "--verbose", "-v",
                                     help="Log debug detail, and print the traceback of an error."),
    ) -> None:
        from llmsight.cli import stopping

        global _verbose
        _verbose = verbose
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
        )
        for handler in logging.getLogger().handlers:
            handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(message)s"))
        stopping.service_started(ctx.invoked_subcommand)
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
    from llmsight.cli.otlp import otlp  # the OpenTelemetry receiver
    app.command(name="otlp")(otlp)
    from llmsight.cli.review import dataset_app, review_app  # review import; dataset export
    app.add_typer(review_app, name="review")
    app.add_typer(dataset_app, name="dataset")
    return app


def main() -> None:
    if typer is None:
        sys.stderr.write(
            "llmsight: the command line needs the server extra: pip install 'llmsight[server]'\n"
        )
        raise SystemExit(2)
    from llmsight.cli import stopping

    stopping.enable()
    code = _run()
    if stopping.is_service():
        # A service ends here, without the interpreter's teardown (see llmsight.cli.stopping).
        stopping.leave(code)
    raise SystemExit(code)


def _run() -> int:
    """Run the command; an error becomes one line on stderr (the traceback only with --verbose) and an exit code."""
    try:
        _build()(standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _verbose:
            sys.stderr.write(mask_secrets("".join(traceback.format_exception(exc))))
        message, code = explain(exc)
        sys.stderr.write(mask_secrets(f"llmsight: error: {message}") + "\n")
        return code
    return 0


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain(exc: BaseException) -> tuple[str, int]:
    """One line for the person at the terminal, and the exit code, for an error that ended a command."""
    from llmsight.errors import LlmsightError

    texts = [str(e) for e in _chain(exc)]
    if any(marker in text for text in texts for marker in _MISSING_TABLES):
        return (f"no llmsight tables in {_store_shown()}; run `llmsight db migrate` or point "
                "LLMSIGHT_CLICKHOUSE_URL at your store", 2)
    if isinstance(exc, LlmsightError):
        return str(exc), 2
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    if isinstance(exc, OSError):
        return f"{first or type(exc).__name__}", 1
    if type(exc).__module__.startswith("clickhouse_connect"):
        return f"the store at {_store_shown()} failed: {first}", 1
    return f"{type(exc).__name__}: {first} (run with --verbose for the traceback)", 1


def _store_shown(argv: list[str] | None = None) -> str:
    """The store the command used (its --url and --database, else LLMSIGHT_CLICKHOUSE_URL), without a password."""
    args = list(sys.argv[1:] if argv is None else argv)
    given: dict[str, str] = {}
    for index, arg in enumerate(args):
        for option in ("--url", "--database"):
            if arg == option and index + 1 < len(args):
                given[option] = args[index + 1]
            elif arg.startswith(option + "="):
                given[option] = arg.split("=", 1)[1]
    try:
        from llmsight import store

        return store.parse_url(given.get("--url"), given.get("--database")).display()
    except Exception:
        return "the configured store"


if __name__ == "__main__":
    main()
