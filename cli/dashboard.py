"""``llmsight dashboard``: the Streamlit dashboard as its own process."""

from __future__ import annotations

import typer


def dashboard(
    port: int = typer.Option(8501, "--port", help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", "--address",
                                help="Address to listen on; anything but localhost needs LLMSIGHT_DASHBOARD_PASSWORD "
                                     "or Streamlit's OIDC login."),
    url: str = typer.Option(None, "--url", help="Store URL; default LLMSIGHT_CLICKHOUSE_URL."),
) -> None:
    """Serve the dashboard (overview, drift, safety, feedback, alerts, traces, export) until Ctrl-C."""
    from llmsight.cli import stopping
    from llmsight.dashboard import server

    try:
        server.run(port=port, address=address, url=url)
    finally:
        stopping.arm("the dashboard")
