"""The hardened dashboard in headless Chromium (issue 15 items 13 and 16), against ``llmsight dashboard`` in its own
process on a small chdb store of its own:

* event text carrying Markdown and HTML (a remote image, a disguised link, ``<img>`` and ``<a>`` tags) shows on the
  Traces page as the literal text: no ``<img>`` or anchor comes from it and the browser fetches nothing from it;
* the Export page's links download, from the real server, exactly the files the export wrote, and the zip of
  them all; a guessed link gets a 404.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.e2e.test_browser_dashboard import SCREENSHOTS, _settled, browser, running_dashboard  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
TRAP = "127.0.0.1:9"  # the discard port: nothing answers, and nothing should ever ask
IMAGE = f"![x](http://{TRAP}/x.png)"
LINK = f"[Open your invoice](http://{TRAP}/phish)"
HTML = f'<img src="http://{TRAP}/tag.png"> <a href="http://{TRAP}/tag">click</a>'
SEED = f"""
import datetime as dt, sys
from llmsight import store
from llmsight.store import EVENT_COLUMNS
from tests.integration.test_dashboard_pages import event
client = store.connect(sys.argv[1])
store.migrate(client)
now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
rows = [event(now - dt.timedelta(minutes=5), ({LINK!r}, {IMAGE!r}, "model-x", "v1"), "t-evil",
              {IMAGE + " " + HTML!r}, "fine", error={"**boom** " + LINK + " " + HTML + " " + IMAGE!r})]
rows += [event(now - dt.timedelta(days=8, minutes=i), ("svc", "answer", "model-x", "v1"), f"t-{{i}}", "q", "a")
         for i in range(20)]
client.insert("events", rows, column_names=EVENT_COLUMNS)
"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """``llmsight dashboard`` on a small seeded chdb store; yields (base URL, export folder)."""
    home = tmp_path_factory.mktemp("hardening-browser")
    url = f"chdb://{home / 'db'}?database=hardening"
    exports = home / "exports"
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMSIGHT_DASHBOARD_REFRESH_S": "600", "LLMSIGHT_EXPORT_DIR": str(exports), "HOME": str(home)}
    subprocess.run([sys.executable, "-c", SEED, url], env=env, cwd=ROOT, check=True, timeout=300)
    with running_dashboard(env, home / "dashboard.log") as (base, _):
        yield base, exports


def _shot(browser, name: str) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"dashboard-{name}.png"))


def test_markdown_and_html_in_event_text_show_as_literal_text(dashboard, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base, _ = dashboard
    browser.get(f"{base}/traces?trace=t-evil&range=24h")
    try:
        _settled(browser, '[data-testid="stMetric"]', 4, timeout=240)
    finally:
        _shot(browser, "traces-hostile")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    images = [e.get_attribute("src") or "" for e in browser.find_elements(By.TAG_NAME, "img")]
    assert not [src for src in images if TRAP in src], images
    anchors = [e.get_attribute("href") or "" for e in browser.find_elements(By.TAG_NAME, "a")]
    assert not [href for href in anchors if TRAP in href], anchors
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert not [name for name in fetched if TRAP in name], fetched
    # The text is all there, as written: the call's header line and its error.
    shown = browser.find_element(By.TAG_NAME, "body").text.replace("\u2060", "")  # the joiners are invisible
    assert f"{IMAGE} · {LINK} · model-x" in shown, shown[:3000]
    assert f"**boom** {LINK} {HTML} {IMAGE}" in shown, shown[:3000]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_export_links_download_the_files_and_the_zip_from_the_server(dashboard, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base, exports = dashboard
    assert _get(f"{base}/llmsight/download/{'A' * 43}")[0] == 404
    browser.get(f"{base}/export")
    _settled(browser, '[data-testid="stFormSubmitButton"] button', 1, timeout=240)
    browser.find_element(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button').click()
    try:
        _settled(browser, 'a[href*="/llmsight/download/"]', 2, timeout=300)
    finally:
        _shot(browser, "export-links")
    [week] = [p for p in exports.iterdir() if p.is_dir()]
    written = sorted(p for p in week.iterdir() if p.is_file())
    links = {e.text.strip(): e.get_attribute("href") for e in
             browser.find_elements(By.CSS_SELECTOR, 'a[href*="/llmsight/download/"]')}
    assert sorted(links) == sorted(f"Download {p.name}" for p in written)
    for path in written:
        assert _get(links[f"Download {path.name}"]) == (200, path.read_bytes()), path.name
    zip_button = next(b for b in browser.find_elements(By.TAG_NAME, "button") if "Prepare a zip" in b.text)
    zip_button.click()
    _settled(browser, 'a[href*="/llmsight/download/"]', len(written) + 1, timeout=240)
    zip_link = next(e for e in browser.find_elements(By.CSS_SELECTOR, 'a[href*="/llmsight/download/"]')
                    if "Download all (zip)" in e.text)
    status, body = _get(zip_link.get_attribute("href"))
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == [p.name for p in written]
        for path in written:
            assert archive.read(path.name) == path.read_bytes()
