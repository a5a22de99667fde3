"""The Review page in headless Chromium: a reviewer labels three calls with the keyboard (A accepts, X
rejects); the labels are in the store under the login's name, and in the week's report (``llmsight export``).

``llmsight dashboard`` runs as its own process on its own chdb path (chdb allows one process per data
directory); seeding, reading the labels back and the export run as short processes before and after it.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmsight.review.weeks import last_complete_week
from tests.e2e.test_browser_dashboard import SCREENSHOTS, chromium_driver, running_dashboard, stop_process

WEEK = last_complete_week()
SEED = """
import datetime as dt, sys, uuid
from llmsight import store
from llmsight.store import EVENT_COLUMNS
client = store.connect(sys.argv[1])
store.migrate(client)
start = dt.datetime.fromisoformat(sys.argv[2])
calls = [("t-insult", "Why was my card declined?", "Shut up, you worthless idiot. Nobody cares about your card."),
         ("t-pin", "How do I reset my PIN?", "Open Card settings, then PIN, and choose a new one."),
         ("t-refund", "Refund for order 7?", "Your order 9 was refunded yesterday."),
         ("t-hours", "Opening hours?", "We are open from 9 to 5 on weekdays.")]
rows = []
for i, (trace, prompt, output) in enumerate(calls):
    row = dict(event_id=uuid.uuid4(), trace_id=trace, parent_id="", ts=start + dt.timedelta(hours=i),
               service="support-bot", environment="production", name="answer", model="model-a", prompt_version="v1",
               input=prompt, output=output, error="", error_type="", latency_ms=300.0, ttft_ms=None, tokens_in=10,
               tokens_out=20, cost_usd=0.001, user_id="u1", session_id="s1", tags={}, metadata="", truncated=0,
               source="test")
    rows.append([row[c] for c in EVENT_COLUMNS])
client.insert("events", rows, column_names=EVENT_COLUMNS)
"""
# After the dashboard stopped: the labels as stored, then the week's report (as `llmsight export` writes it).
LABELS_AND_REPORT = """
import json, sys
from llmsight import store
from llmsight.review.export import export_week
from llmsight.review.labels import latest_labels
client = store.connect(sys.argv[1])
labels = [[lb.trace_id, lb.reviewer, lb.verdict, list(lb.tags)] for lb in latest_labels(client)]
result = export_week(client, sys.argv[2], sys.argv[3], formats="html", topics_by_week=False)
print(json.dumps({"labels": labels, "report": str(result.files["report.html"])}))
"""


@pytest.fixture(scope="module")
def review_dashboard(tmp_path_factory):
    """``llmsight dashboard`` on a chdb store seeded with four calls of the last complete week."""
    path = tmp_path_factory.mktemp("review-chdb")
    url = f"chdb://{path}?database=review"
    env = {**os.environ, "LLMSIGHT_CLICKHOUSE_URL": url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMSIGHT_DASHBOARD_REFRESH_S": "600"}
    start = (WEEK.start.replace(tzinfo=None)).isoformat()
    subprocess.run([sys.executable, "-c", SEED, url, start], env=env, check=True, timeout=300)
    with running_dashboard(env, SCREENSHOTS.parent / "dashboard-review-browser.log") as (base, process):
        yield {"base": base, "url": url, "env": env, "process": process}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium_driver(tmp_path_factory.mktemp("chromium-review-profile")) as driver:
        yield driver


def _progress(browser) -> str:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stProgress"]')
    return found[0].text if found else ""


def _wait_for(browser, expected: str, timeout: float = 240.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(driver) -> bool:
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"] [data-testid="stSpinner"]')
        return expected in _progress(driver) and not running

    WebDriverWait(browser, timeout, poll_frequency=0.5).until(ready)
    time.sleep(0.5)


def test_three_calls_labelled_with_the_keyboard_reach_the_store_and_the_report(review_dashboard, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(f"{review_dashboard['base']}/review?week={WEEK.label}")
    try:
        _wait_for(browser, "0 of 4 calls labelled")
        for key, done in (("x", 1), ("a", 2), ("x", 3)):
            browser.execute_script("document.activeElement && document.activeElement.blur()")  # out of the text boxes
            ActionChains(browser).send_keys(key).perform()
            _wait_for(browser, f"{done} of 4 calls labelled")
        _wait_for(browser, "3 of 4 calls labelled")
    finally:
        browser.save_screenshot(str(SCREENSHOTS / "dashboard-review.png"))
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not errors, [e.text[:500] for e in errors]
    assert "Call 4 of 4" in browser.find_element(By.TAG_NAME, "body").text

    stop_process(review_dashboard["process"])  # chdb: one process per data directory
    env, url = review_dashboard["env"], review_dashboard["url"]
    done = subprocess.run([sys.executable, "-c", LABELS_AND_REPORT, url, WEEK.label, str(tmp_path / "exports")],
                          env=env, check=True, timeout=300, capture_output=True, text=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    who = f"{getpass.getuser()}@localhost"
    assert found["labels"] == [["t-insult", who, "reject", []], ["t-pin", who, "accept", []],
                               ["t-refund", who, "reject", []]]
    html = Path(found["report"]).read_text(encoding="utf-8")
    section = html[html.index('<section id="monitors">'):]
    section = section[:section.index("</section>")]
    # Three reviewed calls, two rejected (no toxic tag given): the toxicity row counts all three.
    assert "<td>toxicity</td><td class=\"num\">3</td>" in section, section[:2000]
