"""The Loss audit page on a chdb store holding heartbeats, stored rows and a dead letter."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from llmsight.collector import Collector
from llmsight.collector.spool_source import SpoolSource
from llmsight.spool import SpoolWriter

pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")


@pytest.fixture
def audited(store_client, store_url, store_database, monkeypatch, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    stamp = (now - dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    calls = [{"type": "llm_call", "schema_version": 1, "event_id": str(uuid.uuid4()), "trace_id": f"t{i}", "ts": stamp,
              "service": "bank", "name": "answer", "latency_ms": 5.0, "producer_id": "p-1"} for i in range(40)]
    beat = {"type": "heartbeat", "schema_version": 1, "event_id": str(uuid.uuid4()), "ts": stamp, "producer_id": "p-1",
            "service": "bank", "host": "web-1", "pid": 42, "sent": 43, "dropped": 2, "spilled": 0, "failed": 1}
    writer = SpoolWriter(tmp_path / "spool", segment_bytes=1 << 30, fsync="never")
    writer.write([json.dumps(e).encode() + b"\n" for e in [*calls, beat]])
    writer.close()
    Collector(SpoolSource(tmp_path / "spool"), store_client, http_port=0).run_until_idle(timeout_s=60)
    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    return store_client


def test_the_audit_page_shows_sent_stored_and_missing_per_producer(audited) -> None:
    app = AppTest.from_string("from llmsight.dashboard.app import run_page\nrun_page('audit')", default_timeout=240)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    shown = {m.label: m.value for m in app.metric}
    assert shown == {"Sent": "43", "Stored": "40", "Missing": "3", "Dropped / failed in the SDK": "2 / 1"}
    totals = next(df.value for df in app.dataframe if "missing" in df.value.columns)
    row = totals.to_dict("records")[0]
    assert (row["producer_id"], row["sent"], row["stored"], row["missing"]) == ("p-1", 43, 40, 3)
    assert any("Not balanced" in w.value for w in app.warning)
