"""Downloads streamed from disk: a small route served next to Streamlit's own, in the same server.

``st.download_button`` cannot stream: whatever it is given (bytes, a file object, or a callable run on the
click) is read whole into memory and kept in Streamlit's in-memory media store until the session lets go of
it. An export of a few hundred MB would sit in the dashboard's memory once per click. Instead the Export
page *offers* a file here and shows a link to it:

* :func:`offer_file` opens a file and :func:`offer_zip` zips files, member by member from disk, into an
  unnamed temporary file (gone when closed, or when the process dies); neither reads a whole file into
  memory;
* each offer gets a random 256-bit token and lives :data:`OFFER_TTL_S` seconds; the page shows its URL only
  to a session that passed the login (:mod:`llmsight.dashboard.auth`), so the URL is a capability that
  cannot be guessed (the login lives in the Streamlit session, which an HTTP GET does not carry);
* :func:`route` serves ``<baseUrlPath>/llmsight/download/<token>`` in chunks of :data:`CHUNK_BYTES`, read
  with ``os.pread`` on a worker thread; an unknown or expired token is a plain 404.

:func:`install` adds the route to the Starlette app that ``streamlit.web.bootstrap.run`` builds (Streamlit
1.67 has no hook for extra routes on that path; ``st.App`` has one but runs its own uvicorn loop and signal
handling, which ``llmsight up`` and the bounded stops rely on not changing).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

log = logging.getLogger("llmsight.dashboard")

PREFIX = "llmsight/download"
OFFER_TTL_S = 600.0
MAX_OFFERS = 256
CHUNK_BYTES = 1 << 20


class TooLarge(ValueError):
    """The file or zip would pass the download cap."""


@dataclass
class Offer:
    handle: IO[bytes]
    size: int
    filename: str
    media_type: str
    expires: float
    readers: int = 0
    closed: bool = field(default=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handle.close()


_lock = threading.Lock()
_offers: dict[str, Offer] = {}


def _sweep(now: float) -> None:
    """Drop expired offers (caller holds the lock); a file being read closes when its last reader ends."""
    for token in [t for t, o in _offers.items() if o.expires <= now]:
        offer = _offers.pop(token)
        if offer.readers == 0:
            offer.close()


def _register(handle: IO[bytes], size: int, filename: str, media_type: str, ttl_s: float) -> str:
    token = secrets.token_urlsafe(32)
    now = time.monotonic()
    with _lock:
        _sweep(now)
        while len(_offers) >= MAX_OFFERS:  # the oldest offer goes first
            oldest = min(_offers, key=lambda t: _offers[t].expires)
            offer = _offers.pop(oldest)
            if offer.readers == 0:
                offer.close()
        _offers[token] = Offer(handle, size, filename, media_type, now + ttl_s)
    return token


def offer_file(path: Path, max_bytes: int, *, ttl_s: float = OFFER_TTL_S) -> str:
    """Offer one file as it is now (opened here: a later rename or delete does not change it); its token.

    Raises :class:`TooLarge` above ``max_bytes``."""
    handle = path.open("rb")
    try:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise TooLarge(f"{path.name} is {size:,} bytes, more than the {max_bytes:,} bytes offered for download")
    except BaseException:
        handle.close()
        raise
    return _register(handle, size, path.name, "application/octet-stream", ttl_s)


def zipped(files: list[Path], max_bytes: int) -> IO[bytes]:
    """The files zipped into an unnamed temporary file (deleted when closed), rewound.

    Each member is copied from disk in chunks; raises :class:`TooLarge` as soon as the zip passes ``max_bytes``.
    """
    out = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=path.name)
                if out.tell() > max_bytes:
                    raise TooLarge(f"the zip passed {max_bytes:,} bytes, the most offered for download")
        out.flush()
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


def offer_zip(files: list[Path], filename: str, max_bytes: int, *, ttl_s: float = OFFER_TTL_S) -> str:
    """Zip ``files`` (see :func:`zipped`) and offer the zip; its token."""
    handle = zipped(files, max_bytes)
    return _register(handle, os.fstat(handle.fileno()).st_size, filename, "application/zip", ttl_s)


def url_path(token: str) -> str:
    """The path (under Streamlit's ``server.baseUrlPath``) a browser downloads the offer from."""
    from streamlit import config as st_config

    base = str(st_config.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(part for part in (base, PREFIX, token) if part)


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _chunks(token: str, offer: Offer) -> Iterator[bytes]:
    try:
        position = 0
        fd = offer.handle.fileno()
        while position < offer.size:
            chunk = os.pread(fd, min(CHUNK_BYTES, offer.size - position), position)
            if not chunk:
                break
            position += len(chunk)
            yield chunk
    finally:
        with _lock:
            offer.readers -= 1
            if offer.readers == 0 and _offers.get(token) is not offer:
                offer.close()


async def _serve(request: Any) -> Any:
    from starlette.responses import PlainTextResponse, StreamingResponse

    token = str(request.path_params.get("token", ""))
    with _lock:
        _sweep(time.monotonic())
        offer = _offers.get(token)
        if offer is not None:
            offer.readers += 1
    if offer is None:
        return PlainTextResponse("No such download (links last 10 minutes; offer it again from the Export page).",
                                 status_code=404, headers={"Cache-Control": "no-store"})
    headers = {
        "Content-Length": str(offer.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(offer.filename)}",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(_chunks(token, offer), media_type=offer.media_type, headers=headers)


def route() -> Any:
    """The Starlette route serving the offers (GET only)."""
    from starlette.routing import Route
    from streamlit import config as st_config

    base = str(st_config.get_option("server.baseUrlPath") or "").strip("/")
    return Route("/" + "/".join(p for p in (base, PREFIX, "{token}") if p), _serve, methods=["GET"])


_installed = False


def install() -> None:
    """Make the Starlette app Streamlit's server builds serve :func:`route` first (once per process)."""
    global _installed
    from streamlit.web.server.starlette import starlette_server

    if _installed:
        return
    build = starlette_server.create_starlette_app  # type: ignore[attr-defined]

    def with_downloads(runtime: Any) -> Any:
        app = build(runtime)
        app.router.routes.insert(0, route())
        return app

    starlette_server.create_starlette_app = with_downloads  # type: ignore[attr-defined]
    _installed = True


def forget_all() -> None:
    """Close every offer (tests; a process exit does the same)."""
    with _lock:
        for offer in _offers.values():
            if offer.readers == 0:
                offer.close()
        _offers.clear()
