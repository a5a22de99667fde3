"""The Export page's download route streams from disk: a big file never sits in memory, links expire, an
unknown token gets nothing, and a link that expires while it is being read still delivers the whole file."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from starlette.requests import Request

from llmsight.dashboard import downloads

SIZE = 24 * (1 << 20)


@pytest.fixture(autouse=True)
def _no_offers_left():
    yield
    downloads.forget_all()


def _request(token: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": f"/{downloads.PREFIX}/{token}", "headers": [],
                    "query_string": b"", "path_params": {"token": token}})


def _drain(token: str, keep: bool = False) -> tuple[int, int, bytes, int]:
    """(status, bytes received, the bytes if ``keep``, largest chunk), reading the response as a server would."""

    async def run() -> tuple[int, int, bytes, int]:
        response = await downloads._serve(_request(token))
        if not hasattr(response, "body_iterator"):
            return response.status_code, len(response.body), bytes(response.body), len(response.body)
        total, largest, kept = 0, 0, bytearray()
        async for chunk in response.body_iterator:
            total += len(chunk)
            largest = max(largest, len(chunk))
            if keep:
                kept += chunk
        return response.status_code, total, bytes(kept), largest

    return asyncio.run(run())


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.parquet"
    with path.open("wb") as out:
        for _ in range(SIZE // (1 << 20)):
            out.write(os.urandom(1 << 20))
    return path


def test_a_big_file_is_streamed_in_chunks_not_held_in_memory(big_file):
    token = downloads.offer_file(big_file, 1 << 30)
    tracemalloc.start()
    try:
        status, received, _, largest = _drain(token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200 and received == SIZE
    assert largest <= downloads.CHUNK_BYTES
    assert peak < 4 * downloads.CHUNK_BYTES, f"peak {peak:,} bytes for a {SIZE:,}-byte download"


def test_the_zip_is_complete_and_built_on_disk(tmp_path, big_file):
    small = tmp_path / "report.html"
    small.write_text("<h1>week</h1>" * 1000)
    tracemalloc.start()
    try:
        token = downloads.offer_zip([big_file, small], "llmsight-2026-W48.zip", 1 << 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * downloads.CHUNK_BYTES, f"peak {peak:,} bytes while zipping {SIZE:,} bytes"
    status, received, body, _ = _drain(token, keep=True)
    assert status == 200
    out = tmp_path / "got.zip"
    out.write_bytes(body)
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["events.parquet", "report.html"]
        assert archive.read("report.html") == small.read_bytes()
        assert archive.read("events.parquet") == big_file.read_bytes()


def test_above_the_cap_nothing_is_offered(tmp_path, big_file):
    with pytest.raises(downloads.TooLarge, match=r"events.parquet is 25,165,824 bytes, more than the 1,000,000"):
        downloads.offer_file(big_file, 1_000_000)
    with pytest.raises(downloads.TooLarge, match=r"the zip passed 1,000,000 bytes"):
        downloads.offer_zip([big_file], "x.zip", 1_000_000)
    assert not downloads._offers


def test_unknown_and_expired_links_get_a_404(big_file):
    status, _, body, _ = _drain("A" * 43, keep=True)
    assert status == 404 and b"No such download" in body
    token = downloads.offer_file(big_file, 1 << 30, ttl_s=0.0)
    assert _drain(token)[0] == 404
    assert not downloads._offers


def test_a_link_expiring_during_a_download_still_delivers_the_whole_file(big_file):
    token = downloads.offer_file(big_file, 1 << 30, ttl_s=30.0)
    expected = big_file.read_bytes()

    async def run() -> bytes:
        response = await downloads._serve(_request(token))
        got = bytearray()
        async for chunk in response.body_iterator:
            got += chunk
            with downloads._lock:  # the link expires mid-way: the sweep must not close the file under the reader
                offer = downloads._offers.get(token)
                if offer is not None:
                    offer.expires = 0.0
                downloads._sweep(1.0)
        return bytes(got)

    assert asyncio.run(run()) == expected
    assert _drain(token)[0] == 404  # and then it is gone
