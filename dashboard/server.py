"""Run the dashboard's Streamlit server in the current process.

:func:`run` blocks on the calling thread, which must be the main thread (Streamlit installs signal
handlers). ``llmsight up`` calls it after starting the collector and the scheduler threads, so all
three share one process and, with chdb, one data directory: the page scripts run in this process
and reuse :func:`llmsight.store.connect`'s cached client.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from llmsight import store
from llmsight.dashboard import auth
from llmsight.store import settings as store_settings

log = logging.getLogger("llmsight.dashboard")

SCRIPT = Path(__file__).with_name("streamlit_app.py")


def flag_options(port: int, address: str) -> dict[str, object]:
    """Streamlit's settings for a production server (keys as ``streamlit run`` flags spell them)."""
    return {
        "server_port": port,
        "server_address": address,
        "server_headless": True,
        "server_fileWatcherType": "none",
        "server_runOnSave": False,
        "browser_gatherUsageStats": False,
        "global_developmentMode": False,
        "client_toolbarMode": "viewer",
    }


def _warm_up() -> None:
    try:
        from llmsight.dashboard import drift

        drift.embedder()
    except Exception:  # the drift map will say what is wrong when someone opens it
        log.warning("dashboard: embedding model warm-up failed", exc_info=True)


def run(port: int = 8501, address: str = "127.0.0.1", url: str | None = None) -> None:
    """Serve the dashboard on ``address:port`` until interrupted; blocks the (main) thread.

    Fails fast with :class:`~llmsight.errors.ConfigError` when ``address`` is not a loopback
    address and no login is configured. ``url`` overrides LLMSIGHT_CLICKHOUSE_URL for the pages.
    """
    from streamlit import config as st_config
    from streamlit.web import bootstrap

    if url:
        os.environ[store_settings.CLICKHOUSE_URL.name] = url
    options = flag_options(port, address)
    # Streamlit looks for secrets.toml (the OIDC settings) next to the main script's config.
    st_config._main_script_path = str(SCRIPT)
    bootstrap.load_config_options(flag_options=options)
    auth.check_startup(address)
    # Open the store (and take the chdb lock) before serving, so a store problem stops the start
    # with its own message instead of surfacing in every page.
    client = store.connect(url)
    store.migrate(client)
    # Load the embedding model for the drift map now, not on the first visit to the Drift page.
    threading.Thread(target=_warm_up, name="dashboard-warm-up", daemon=True).start()
    log.info("dashboard: serving %s on http://%s:%d", store.parse_url(url).display(), address, port)
    bootstrap.run(str(SCRIPT), False, [], options)
