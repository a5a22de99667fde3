"""The dashboard against hostile text and guessing, on a real chdb store through AppTest (and the real CLI for the
start-up checks): event text is shown as text, wrong passwords slow the guesser down, logins expire, and a
login that could not be safe stops the start."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.dashboard import auth
from llmsight.store import EVENT_COLUMNS, queries
from tests.integration.test_dashboard_pages import event, listening_everywhere, page, seeded  # noqa: F401

LLMSIGHT = str(Path(sys.executable).with_name("llmsight"))
IMAGE = "![pixel](https://tracker.example/p.png?u=1)"
LINK = "[Reset your password](https://evil.example/login)"
PASSWORD = "correct horse battery staple"


def test_event_text_is_shown_as_text_not_markdown(seeded, streamlit_on_localhost):  # noqa: F811
    now = queries.now()
    hostile = (f"svc {LINK}", f"name {IMAGE}", "model-x", "v1")
    seeded.insert("events", [event(now - dt.timedelta(minutes=5), hostile, "t-evil", "prompt", "output",
                                   error=f"**boom** {LINK} <img src=x onerror=alert(1)> {IMAGE}")],
                  column_names=EVENT_COLUMNS)
    app = page("traces", trace="t-evil")
    shown = [m.value for m in app.markdown] + [e.value for e in app.error] + [s.value for s in app.subheader]
    mentioning = [text for text in shown if "tracker" in text or "evil" in text]
    assert len(mentioning) >= 2, shown  # the call's header line and its error
    for text in mentioning:
        # Every bracket, parenthesis, angle bracket and "!" is escaped: no image, link or tag can form.
        assert not re.findall(r"(?<!\\)[\[\]()<>!]", text), text
    # The text itself is all there, readable.
    header = next(t for t in mentioning if "tracker" in t and "boom" not in t)
    # (with a word joiner inside "https://": no autolink forms either; the browser test checks the rendering)
    assert header.replace("\\", "").replace("\u2060", "").startswith(f"**name {IMAGE}** · svc {LINK} · model-x")
    assert "https\\:\u2060\\/\\/tracker" in header


@pytest.fixture
def password_login(listening_everywhere, monkeypatch):  # noqa: F811
    monkeypatch.setenv("LLMSIGHT_DASHBOARD_PASSWORD", PASSWORD)
    client = "unknown"  # AppTest has no client address
    auth.BACKOFF.succeeded(client)
    yield
    auth.BACKOFF.succeeded(client)


def _login_page() -> AppTest:
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('overview')", default_timeout=240)
    app.run()
    return app


def _try(app: AppTest, given: str) -> AppTest:
    app.text_input[0].input(given)
    app.button[0].click().run()
    return app


def test_after_five_wrong_passwords_even_the_right_one_must_wait(seeded, password_login):  # noqa: F811
    app = _login_page()
    for attempt in range(1, 5):
        assert [e.value for e in _try(app, f"guess {attempt}").error] == ["Wrong password."]
    assert [e.value for e in _try(app, "guess 5").error] == ["Wrong password. Wait 1 s before the next try."]
    # The right password during the wait is not even checked.
    assert _try(app, PASSWORD).error[0].value.startswith("Too many wrong passwords from your address")
    assert not app.metric
    time.sleep(1.1)
    assert [e.value for e in _try(app, "guess 6").error] == ["Wrong password. Wait 2 s before the next try."]
    time.sleep(2.1)
    assert [e.value for e in _try(app, "guess 7").error] == ["Wrong password. Wait 4 s before the next try."]
    time.sleep(4.1)
    _try(app, PASSWORD)
    assert not app.exception and app.metric  # in, and the count starts again
    assert auth.BACKOFF.wait_left("unknown") == 0


def test_doubling_stops_at_fifteen_minutes():
    backoff = auth.Backoff()
    delays = [backoff.failed("10.0.0.9", now=0.0) for _ in range(20)]
    assert delays[:4] == [0.0] * 4 and delays[4:8] == [1.0, 2.0, 4.0, 8.0] and delays[-1] == 900.0
    assert backoff.wait_left("10.0.0.8", now=0.0) == 0  # another client is not slowed down


def test_a_login_expires(seeded, password_login, monkeypatch):  # noqa: F811
    app = _try(_login_page(), PASSWORD)
    assert app.metric
    monkeypatch.setenv("LLMSIGHT_DASHBOARD_SESSION_HOURS", str(1 / 3600))  # one second
    time.sleep(1.2)
    app.run()
    assert not app.metric
    assert [w.value for w in app.warning] == ["Your session has expired; log in again."]
    assert app.text_input[0].label == "Password"


def test_the_oidc_allowlist_matches_addresses_and_whole_domains():
    allow = ("oncall@example.com", "corp.example")
    assert auth.is_allowed("OnCall@Example.com", allow)
    assert auth.is_allowed("anyone@corp.example", allow)
    assert not auth.is_allowed("someone@example.com", allow)
    assert not auth.is_allowed("x@evil.corp.example", allow) and not auth.is_allowed("x@corp.example.evil", allow)
    assert not auth.is_allowed(None, allow) and not auth.is_allowed("no-at-sign", allow)


def _dashboard(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}", **env}
    return subprocess.run([LLMSIGHT, "dashboard", "--port", "1", *args], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_short_password_stops_the_start_with_one_clear_line(tmp_path):
    done = _dashboard(tmp_path, "--address", "0.0.0.0", LLMSIGHT_DASHBOARD_PASSWORD="short-pw")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "llmsight: error: LLMSIGHT_DASHBOARD_PASSWORD is 8 characters long; use at least 12 (a long random one "
        "from a secret).")
    assert "Traceback" not in done.stderr and "short-pw" not in done.stderr + done.stdout


def test_oidc_beyond_localhost_needs_an_allowlist(tmp_path):
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\n'
                       'client_id = "id"\nclient_secret = "secret"\n'
                       'server_metadata_url = "https://accounts.example/.well-known/openid-configuration"\n')
    done = _dashboard(tmp_path, "--address", "0.0.0.0", LLMSIGHT_DASHBOARD_PASSWORD="",
                      LLMSIGHT_DASHBOARD_ALLOWED_USERS="")
    assert done.returncode == 2, done.stderr
    assert "LLMSIGHT_DASHBOARD_ALLOWED_USERS" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def _export(tmp_path: Path, monkeypatch, cap: int | None = None) -> tuple[AppTest, list[Path]]:
    monkeypatch.setenv("LLMSIGHT_EXPORT_DIR", str(tmp_path))
    if cap is not None:
        monkeypatch.setenv("LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES", str(cap))
    moment = queries.now() - dt.timedelta(hours=1)
    week = "{}-W{:02d}".format(*moment.isocalendar()[:2])
    app = page("export")
    app.text_input(key="export_week").input(week)
    app.multiselect(key="export_formats").set_value(["parquet", "html"])
    app.button[0].click().run(timeout=120)
    assert not app.exception, [e.value for e in app.exception]
    return app, sorted((tmp_path / week).iterdir())


def _fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    """GET ``url`` from the download route (the real one, in a Starlette app of its own)."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from llmsight.dashboard import downloads

    with TestClient(Starlette(routes=[downloads.route()])) as client:
        response = client.get(url)
    return response.status_code, response.content, dict(response.headers)


def _links(app: AppTest) -> dict[str, str]:
    return {b.proto.label: b.proto.url for b in app.get("link_button")}


def test_export_downloads_stream_from_disk_and_the_zip_is_complete(seeded, tmp_path, monkeypatch,  # noqa: F811
                                                                    streamlit_on_localhost):
    import io
    import zipfile

    app, written = _export(tmp_path, monkeypatch)
    # Nothing goes through Streamlit's in-memory media store: no download button at all, a link per file.
    assert not app.get("download_button")
    links = _links(app)
    assert sorted(links) == sorted(f"Download {p.name}" for p in written)
    for path in written:
        url = links[f"Download {path.name}"]
        assert re.fullmatch(r"/llmsight/download/[A-Za-z0-9_-]{43}", url), url  # 256 random bits
        status, body, headers = _fetch(url)
        assert status == 200 and body == path.read_bytes(), path.name
        assert headers["content-disposition"] == f"attachment; filename*=UTF-8''{path.name}"
        assert headers["cache-control"] == "no-store"
    # The zip is built only when asked for.
    assert "Download all (zip)" not in links
    app.button(key="export_zip").click().run(timeout=120)
    assert not app.exception, [e.value for e in app.exception]
    zip_url = _links(app)["Download all (zip)"]
    status, body, _ = _fetch(zip_url)
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == [p.name for p in written]
        for path in written:
            assert archive.read(path.name) == path.read_bytes()
    # A guessed or altered link gets nothing.
    assert _fetch(zip_url[:-1] + ("A" if zip_url[-1] != "A" else "B"))[0] == 404


def test_export_downloads_above_the_cap_are_refused(seeded, tmp_path, monkeypatch, streamlit_on_localhost):  # noqa: F811
    from llmsight.dashboard import downloads

    app, written = _export(tmp_path, monkeypatch, cap=2000)
    small = [p for p in written if p.stat().st_size <= 2000]
    big = [p for p in written if p.stat().st_size > 2000]
    assert big and small
    assert sorted(_links(app)) == sorted(f"Download {p.name}" for p in small)  # no zip, no big file
    assert not [b for b in app.button if b.key == "export_zip"]
    assert any("LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES" in i.value for i in app.info)
    refused = [c.value for c in app.caption if "above the download cap" in c.value]
    assert sorted(refused) == sorted(f"{p.name} ({p.stat().st_size:,} bytes) is above the download cap "
                                     "(LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES); it is on the server." for p in big)
    with pytest.raises(downloads.TooLarge, match="2,000 bytes"):
        downloads.zipped(written, 2000)
    with pytest.raises(downloads.TooLarge, match=f"{big[0].name} is .* more than the 2,000 bytes"):
        downloads.offer_file(big[0], 2000)
