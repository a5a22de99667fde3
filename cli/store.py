"""``llmsight store serve``: one process owns the chdb data directory; every other process reaches it over HTTP."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import typer

log = logging.getLogger("llmsight.store.server")

app = typer.Typer(help="Serve the chdb store to other processes.", no_args_is_help=True)

STOP_DEADLINE_S = 8.0  # after SIGTERM or Ctrl-C, the process ends by then whatever it waits on


@app.command()
def serve(
    path: str = typer.Option(None, "--path", help="The chdb data directory (instead of --url)."),
    url: str = typer.Option(None, "--url", help="A chdb:///DIR store URL; default LLMSIGHT_CLICKHOUSE_URL "
                            "or chdb://~/.llmsight/db."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; one other machines can reach "
                             "needs --password."),
    port: int = typer.Option(8123, "--port", help="TCP port (0: any free port, printed at start)."),
    user: str = typer.Option("default", "--user", help="User name clients give with --password."),
    password: str = typer.Option(None, "--password", help="Require HTTP basic auth with this password "
                                 "(visible in `ps`: prefer --password-file)."),
    password_file: Path = typer.Option(None, "--password-file", help="Read the password from this file's first line."),
    connections: int = typer.Option(4, "--connections", help="chdb handles: statements that may run at once."),
) -> None:
    """Own the chdb data directory and serve ClickHouse's HTTP interface on it.

    Other processes (analyzer workers, the dashboard, the collector) then set
    LLMSIGHT_CLICKHOUSE_URL=http://127.0.0.1:8123/llmsight. SIGTERM or Ctrl-C stops it.
    """
    from llmsight.errors import ConfigError
    from llmsight.store.server import StoreServer

    if path and url:
        raise ConfigError("give --path or --url, not both")
    if password_file is not None:
        if password:
            raise ConfigError("give --password or --password-file, not both")
        lines = password_file.read_text().splitlines()
        password = lines[0].strip() if lines else ""
        if not password:
            raise ConfigError(f"--password-file {password_file} holds no password")
    server = StoreServer(f"chdb://{os.path.abspath(os.path.expanduser(path))}" if path else url,
                         host=host, port=port, user=user, password=password or "", connections=connections)
    server.open()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("store server: %s received; stopping", signal.Signals(signum).name)
        server.stop()
        threading.Thread(target=_deadline, name="store-server-deadline", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bound_host, bound_port = server.address
    typer.echo(f"store: serving {server.target.display()} on http://{bound_host}:{bound_port} "
               f"(pid {os.getpid()}); other processes use LLMSIGHT_CLICKHOUSE_URL={server.client_url()}")
    sys.stdout.flush()
    server.serve_forever()
    typer.echo("store: stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # chdb is closed; the interpreter's teardown has nothing left to do but can wait on chdb's threads.
    os._exit(0)


def _deadline() -> None:
    threading.Event().wait(STOP_DEADLINE_S)
    log.error("store server: not stopped within %.0f s; exiting now", STOP_DEADLINE_S)
    sys.stderr.flush()
    os._exit(1)
