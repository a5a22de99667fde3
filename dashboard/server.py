"""Run the dashboard's Streamlit server in the current process.

:func:`run` blocks on the calling thread, which must be the main thread (Streamlit installs signal
handlers). ``llmsight up`` calls it after starting the collector and the scheduler threads, so all
three share one process and, with chdb, one data directory: the page scripts run in this process
and reuse :func:`llmsight.store.connect`'s cached client.

**Least privilege.** The dashboard never changes the schema: it connects without ``CREATE DATABASE`` and
only reads which migrations are applied (:func:`check_store`); a store without them stops the start with
one line saying to run ``llmsight db migrate`` (the Helm chart's migrations job, or ``llmsight up``, does
that). Its ClickHouse user needs ``SELECT`` on the database and ``INSERT`` on the few tables it writes
(``alerts`` for acknowledgements, ``alert_silences`` for silences); see the README's grants table.

The Export page's downloads are served by a route added next to Streamlit's
(:mod:`llmsight.dashboard.downloads`), streamed from disk.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from llmsight import store
from llmsight.dashboard import auth, downloads
from llmsight.errors import StoreError
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


def check_store(client: Any, url: str | None = None) -> None:
    """Raise :class:`StoreError` unless every migration this version ships is applied; writes nothing."""
    from llmsight.store.migrate import load_migrations, recorded_state

    shown = store.parse_url(url).display()
    done, _ = recorded_state(client)
    if done is None:
        raise StoreError(f"no llmsight tables in {shown}; run `llmsight db migrate` or point "
                         "LLMSIGHT_CLICKHOUSE_URL at your store")
    pending = [m.name for m in load_migrations() if m.version not in done]
    if pending:
        raise StoreError(f"the store {shown} lacks migration(s) {', '.join(pending)}; run `llmsight db migrate` "
                         "(the dashboard never changes the schema)")


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
    client = store.connect(url, create_database=False)
    check_store(client, url)
    downloads.install()
    # Load the embedding model for the drift map now, not on the first visit to the Drift page.
    threading.Thread(target=_warm_up, name="dashboard-warm-up", daemon=True).start()
    log.info("dashboard: serving %s on http://%s:%d", store.parse_url(url).display(), address, port)
    bootstrap.run(str(SCRIPT), False, [], options)
