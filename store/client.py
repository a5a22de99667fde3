"""The ClickHouse client factory: ``chdb://`` (in-process, the default) or ``http(s)://`` (a server).

Every read and write in llmsight goes through :func:`connect`, which always calls
``clickhouse_connect.get_client(dsn=...)``, so one SQL dialect and one schema serve both.

chdb allows one process per data directory and one data directory per process. The first limit
surfaces from the engine as an opaque "Error initializing EmbeddedServer", so :func:`connect`
takes an advisory lock file first and, when another process holds it, raises
:class:`StoreLockedError` naming that process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlparse

from llmsight import config
from llmsight.errors import ConfigError, StoreError, StoreLockedError, masked_url
from llmsight.store import settings

log = logging.getLogger("llmsight.store")

DEFAULT_DATABASE = "llmsight"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
LOCK_FILE = ".llmsight.lock"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL."""

    kind: str  # "chdb" or "http"
    dsn: str  # what is handed to clickhouse_connect.get_client(dsn=...)
    database: str
    path: str | None = None  # chdb data directory

    def display(self) -> str:
        """The URL without its password, for logs and messages."""
        if self.kind == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        parsed = urlparse(self.dsn)
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        user = f"{parsed.username}@" if parsed.username else ""
        return f"{parsed.scheme}://{user}{host}{port}/{self.database}"


def masked(raw: str) -> str:
    """``raw`` with the password of a ``scheme://user:password@host`` URL replaced by ``***``, for messages."""
    return str(masked_url(raw))


def parse_url(url: str | None = None, database: str | None = None) -> StoreURL:
    """Parse a store URL; raise :class:`ConfigError` with the accepted forms when it is wrong.

    Accepted forms:

    * ``chdb://~/.llmsight/db``, ``chdb:///abs/path``, optionally ``?database=name``;
    * ``http(s)://user:pass@host:8123/db``.
    """
    raw = url if url is not None else config.resolve(settings.CLICKHOUSE_URL, strict=True)
    shown = masked(raw)  # every message below shows the URL without its password
    parsed = urlparse(raw)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "chdb":
        # chdb://~/x puts "~" in the netloc; chdb:///abs/x leaves it empty.
        location = unquote((parsed.netloc or "") + parsed.path)
        if not location or location in ("memory", ":memory:"):
            raise ConfigError(f"LLMSIGHT_CLICKHOUSE_URL={shown!r}: give chdb a data directory, e.g. chdb://~/.llmsight/db")
        path = os.path.abspath(os.path.expanduser(location))
        db = database or query.get("database") or DEFAULT_DATABASE
        _check_db(db, shown)
        return StoreURL("chdb", f"chdb://{path}", db, path)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"LLMSIGHT_CLICKHOUSE_URL={shown!r}: no host; expected http(s)://user:pass@host:8123/db")
        db = database or parsed.path.strip("/").split("/")[0] or query.get("database") or DEFAULT_DATABASE
        _check_db(db, shown)
        # clickhouse-connect turns every query parameter of a DSN into an argument; ``database`` is
        # given on its own, so it must not come twice.
        rest = [(k, v) for k, v in parse_qsl(parsed.query) if k != "database"]
        return StoreURL("http", parsed._replace(query=urlencode(rest)).geturl(), db)
    raise ConfigError(
        f"LLMSIGHT_CLICKHOUSE_URL={shown!r}: unknown scheme {parsed.scheme!r}; "
        "use chdb:///path/to/dir (embedded) or http(s)://user:pass@host:8123/db (server)"
    )


def _check_db(db: str, raw: str) -> None:
    if not _DB_NAME.match(db):
        raise ConfigError(f"store URL {raw!r}: database name {db!r} must match {_DB_NAME.pattern}")


_lock = threading.Lock()
_lock_files: dict[str, Any] = {}
_clients: dict[tuple[str, str], Any] = {}


def connect(url: str | None = None, database: str | None = None, *, create_database: bool = True) -> Any:
    """Return a clickhouse-connect client for the store, creating the database if asked.

    With chdb, clients are cached per (path, database) in this process, because chdb allows
    one data directory per process; a server URL gets a fresh client each call.
    """
    import clickhouse_connect

    target = parse_url(url, database)
    if target.kind == "chdb":
        assert target.path is not None
        with _lock:
            key = (target.path, target.database)
            if key in _clients:
                return _clients[key]
            _acquire_dir_lock(target.path)
            try:
                admin = clickhouse_connect.get_client(dsn=target.dsn)
                if create_database:
                    admin.command(f"CREATE DATABASE IF NOT EXISTS `{target.database}`")
                client = clickhouse_connect.get_client(dsn=target.dsn, database=target.database)
            except Exception as exc:
                raise _explain(exc, target) from exc
            _clients[key] = client
            return client
    try:
        if create_database:
            admin = clickhouse_connect.get_client(dsn=target.dsn, database="default")
            # Only when it is missing: ClickHouse checks the CREATE DATABASE grant even for IF NOT EXISTS, and the
            # collector and the analyzers need no such grant once the migrations made the database.
            exists = admin.query("SELECT count() FROM system.databases WHERE name = {name:String}",
                                 parameters={"name": target.database}).result_rows[0][0]
            if not exists:
                admin.command(f"CREATE DATABASE IF NOT EXISTS `{target.database}`")
        return clickhouse_connect.get_client(dsn=target.dsn, database=target.database)
    except Exception as exc:
        raise StoreError(f"cannot reach ClickHouse at {target.display()}: {masked(str(exc))}") from exc


def close_all() -> None:
    """Close every cached chdb client and release the data-directory locks (tests use this)."""
    with _lock:
        for client in _clients.values():
            try:
                client.close()
            except Exception:  # closing is best effort
                log.debug("store: close failed", exc_info=True)
        _clients.clear()
        for handle in _lock_files.values():
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            except OSError:
                pass
        _lock_files.clear()


def _acquire_dir_lock(path: str) -> None:
    if path in _lock_files:
        return
    os.makedirs(path, exist_ok=True)
    handle = open(os.path.join(path, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "an unknown process"
        handle.close()
        raise StoreLockedError(
            f"the chdb store at {path} is in use by {holder}. chdb allows one process per data "
            "directory: stop that process, run everything in one process with `llmsight up`, "
            "or point LLMSIGHT_CLICKHOUSE_URL at a ClickHouse server (http://user:pass@host:8123/db)."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]})\n")
    handle.flush()
    _lock_files[path] = handle


def _explain(exc: Exception, target: StoreURL) -> StoreError:
    text = str(exc)
    if "EmbeddedServer already initialized" in text:
        return StoreError(
            f"this process already has a chdb store open at another path; chdb allows one data "
            f"directory per process, so {target.path} cannot be opened too. Close the other "
            f"client first (llmsight.store.close_all()). Engine said: {text[:300]}"
        )
    if "Cannot lock file" in text or "EmbeddedServer" in text:
        return StoreLockedError(
            f"the chdb store at {target.path} is locked by another process (chdb allows one process "
            f"per data directory). Engine said: {text[:300]}"
        )
    return StoreError(f"cannot open the chdb store at {target.path}: {text[:500]}")
