"""Issue 15, SDK half: what leaks in practice is redacted in every field, every field is bounded,
the spool's disk use is capped for all processes, bad arguments never raise, and each process
sends heartbeats with its counters for the loss audit. Each test here failed before the change."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmsight
from llmsight.redact import redact
from llmsight.schema import HEARTBEAT_FIELDS, validate
from llmsight.sinks import FileSink, MemorySink, Stats
from llmsight.spool import list_segments, read_lines

MAX_TAGS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_ID_CHARS = 64, 128, 1024, 256  # llmsight.tracing's bounds


def test_the_documented_bounds():
    from llmsight import tracing

    bounds = (tracing.MAX_TAGS, tracing.MAX_TAG_KEY_CHARS, tracing.MAX_TAG_VALUE_CHARS, tracing.MAX_ID_CHARS)
    assert bounds == (MAX_TAGS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_ID_CHARS)


@pytest.fixture
def sink():
    memory = MemorySink()
    llmsight.init(sink=memory, service="svc", environment="test")
    yield memory
    llmsight.shutdown(2)


def flushed(sink: MemorySink) -> list[dict]:
    assert llmsight.flush(10) is True
    for event in sink.events + sink.heartbeats:
        validate(event)
    return list(sink.events)


# -- item 2: what leaks in practice ------------------------------------------------------------------

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nQ2xv\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key:\n{PEM}\nthanks", "key:\n[PRIVATE_KEY]\nthanks"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk (cut here", "[PRIVATE_KEY]"),
        ("temp ASIAIOSFODNN7EXAMPLE ok", "temp [API_KEY] ok"),
        ("aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY done", "aws secret [AWS_SECRET] done"),
        ("client_secret_value=s3cr3tvalue", "client_secret_value=[SECRET]"),
        ('{"client_secret": "abc123def456"}', '{"client_secret": "[SECRET]"}'),
        ("password: correct-horse", "password: [SECRET]"),
        ("stripe sk_live_51HxAbCdEfGhIj and rk_live_51HxAbCdEfGhIj", "stripe [API_KEY] and [API_KEY]"),
        ("gh ghp_" + "a1B2" * 9 + " and github_pat_" + "11AB" * 8, "gh [API_KEY] and [API_KEY]"),
        ("slack xoxb-123456789012-abcdefABCDEF", "slack [API_KEY]"),
        ("post to https://hooks.slack.com/services/T0001/B0002/XXXXyyyyZZZZ now",
         "post to https://hooks.slack.com/[SLACK_WEBHOOK] now"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3In0.c2lnbmF0dXJlLXZhbHVl", "jwt [API_KEY]"),
        ("Authorization: Basic dXNlcjpodW50ZXIy", "Authorization: Basic [TOKEN]"),
        ("db postgres://app:hunter2@db.internal:5432/x", "db postgres://app:[PASSWORD]@db.internal:5432/x"),
        ("ssn 078-05-1120.", "ssn [SSN]."),
        ("iban de89 3704 0044 0532 0130 00 please", "iban [IBAN] please"),
        ("iban DE89 37040044 05320130 00.", "iban [IBAN]."),
        ("iban fr14 2004 1010 0505 0001 3m02 606", "iban [IBAN]"),
    ],
)
def test_redacts_what_leaks_in_practice(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a basic understanding of the secretary's role",
        "de89 3704 0044 0532 0130 01 fails mod 97",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "https://example.com/path?q=1",
    ],
)
def test_keeps_lookalikes(text):
    assert redact(text) == text


def test_every_string_that_leaves_the_process_is_redacted(sink):
    @llmsight.monitor(tags={"owner": "ops@corp.com"})
    def ask(q):
        return "ok"

    with llmsight.context(user_id="jane@corp.com", session_id="sess for +1 415 555 2671",
                          tags={"contact": "bob@corp.com", "note": "card 4111 1111 1111 1111"}):
        ask("hi")
    trace = llmsight.current_trace_id()
    llmsight.feedback(trace, comment="mail jane@corp.com", edited_output="sk_live_51HxAbCdEfGhIj",
                      user_id="jane@corp.com")
    call, fb = flushed(sink)
    assert call["tags"] == {"owner": "[EMAIL]", "contact": "[EMAIL]", "note": "card [CARD]"}
    assert (call["user_id"], call["session_id"]) == ("[EMAIL]", "sess for [PHONE]")
    assert (fb["comment"], fb["edited_output"], fb["user_id"]) == ("mail [EMAIL]", "[API_KEY]", "[EMAIL]")


# -- item 3: every field is bounded -----------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(tag_count=st.integers(0, 300), key_len=st.integers(1, 5000), value_len=st.integers(0, 50_000),
       id_len=st.integers(1, 100_000), unit=st.sampled_from(["a", "(", "1 ", "é", "@"]))
def test_fuzzed_fields_are_bounded_and_flagged(sink, tag_count, key_len, value_len, id_len, unit):
    sink.events.clear()
    tags = {f"{i}{unit * key_len}": unit * value_len for i in range(tag_count)}
    big = unit * id_len

    @llmsight.monitor(name=big, model=big, prompt_version=big, tags=tags)
    def ask(q):
        return "ok"

    with llmsight.context(user_id=big, session_id=big):
        ask("hi")
    [event] = flushed(sink)
    assert len(event["tags"]) <= MAX_TAGS
    assert all(len(k) <= MAX_TAG_KEY_CHARS and len(v) <= MAX_TAG_VALUE_CHARS for k, v in event["tags"].items())
    for field in ("name", "model", "prompt_version", "user_id", "session_id"):
        assert len(event[field]) <= MAX_ID_CHARS, field
    over = (tag_count > MAX_TAGS or (tag_count and (key_len + 3 > MAX_TAG_KEY_CHARS or value_len > MAX_TAG_VALUE_CHARS))
            or id_len > MAX_ID_CHARS)
    if over:
        assert event["truncated"] is True
    # Bounded fields keep the encoded event small, whatever the host passed.
    assert len(sink.lines[-1]) < 200_000


def test_fuzzed_fields_cost_about_what_small_ones_do(sink):
    """Building an event with hostile tags and ids costs a bounded multiple of building a plain one."""
    @llmsight.monitor
    def ask(q):
        return "ok"

    def run(tags, ident) -> float:
        start = time.perf_counter()
        with llmsight.context(user_id=ident, session_id=ident, tags=tags):
            for _ in range(20):
                ask("hi")
        assert llmsight.flush(60)
        return time.perf_counter() - start

    plain = min(run({"a": "b"}, "u1") for _ in range(3))
    hostile = min(run({f"{i}" + "(" * 5000: "(" * 200_000 for i in range(500)}, "(" * 1_000_000) for _ in range(2))
    # 64 tags of 1,024 characters each are redacted per event, against one short tag: a fixed multiple.
    assert hostile <= 400 * max(plain, 0.002), (hostile, plain)


def test_big_host_objects_wait_in_the_queue_as_bounded_text():
    memory = MemorySink()
    llmsight.init(sink=memory, max_text_chars=1000, flush_interval=60, batch_size=10_000)
    worker = llmsight.client._state.client.worker
    try:
        @llmsight.monitor
        def ask(messages, blob):
            return "x" * 10_000_000

        huge = "y" * 5_000_000
        for _ in range(50):
            ask([{"role": "user", "content": huge}] * 3, huge)
        # 50 calls x (3 x 5 MB + 5 MB + 10 MB): far beyond memory if held; bounded text is ~4 KB a field.
        assert worker.queued_bytes < 50 * 40_000, worker.queued_bytes
        held = worker._queue[0]
        assert len(held[3][1]) <= 1000 + 257 and len(held[5]) <= 1000 + 257
        assert len(held[3][0][0]["content"]) <= 1000 + 257
        assert llmsight.flush(30)
        assert all(e["truncated"] for e in memory.events) and len(memory.events) == 50
    finally:
        llmsight.shutdown(5)


def test_the_queue_is_bounded_in_bytes_and_drops_the_oldest(monkeypatch):
    monkeypatch.setenv("LLMSIGHT_QUEUE_MAX_BYTES", str(1_000_000))
    memory = MemorySink()
    llmsight.init(sink=memory, flush_interval=60, batch_size=100_000, queue_size=100_000)
    worker = llmsight.client._state.client.worker
    try:
        @llmsight.monitor
        def ask(q):
            return q

        for i in range(200):
            ask(f"{i:04d}" + "z" * 20_000)  # ~40 KB a call
        assert worker.queued_bytes <= 1_000_000
        assert llmsight.flush(30)
        counts = llmsight.stats()
        assert counts["dropped"] >= 150 and counts["sent"] == 200 - counts["dropped"]
        assert memory.events[-1]["input"].startswith("0199")  # the newest kept, the oldest dropped
    finally:
        llmsight.shutdown(5)


# -- item 5: disk is bounded ------------------------------------------------------------------------

def _write_in_child(directory, cap: int, tag: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sink = FileSink(str(directory), 64 * 1024, "never", cap)
            stats = Stats()
            line = json.dumps({"type": "llm_call", "input": tag + "p" * 1000}).encode() + b"\n"
            for _ in range(300):
                sink.send([("k", line)] * 10, stats)  # 300 x ~10 KB = 3 MB per process
            sink.close(1, stats)
            sink._enforce_cap(stats)
            with open(directory / f"stats-{tag}.json", "w") as out:
                json.dump(stats.snapshot(), out)
            code = 0
        finally:
            os._exit(code)
    return pid


def test_the_spool_cap_holds_for_every_process_sharing_the_directory(tmp_path):
    spool, cap = tmp_path / "spool", 1_000_000
    spool.mkdir()
    children = [_write_in_child(spool, cap, tag) for tag in ("a", "b", "c")]
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    on_disk = sum(s.path.stat().st_size for s in list_segments(spool))
    assert on_disk <= cap + 3 * 64 * 1024  # each writer may hold one open segment over the cap
    kept = sum(1 for s in list_segments(spool) for _ in read_lines(s.path))
    counts = [json.loads((spool / f"stats-{tag}.json").read_text()) for tag in ("a", "b", "c")]
    assert sum(c["sent"] for c in counts) == 9000
    assert sum(c["dropped"] for c in counts) + kept == 9000  # every dropped event is counted, once


def test_an_unwritable_spool_logs_once_a_minute_not_once_a_batch(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = FileSink(str(blocker / "spool"), 1 << 20, "never", 1 << 30)
    stats = Stats()
    with caplog.at_level(logging.WARNING, logger="llmsight"):
        for _ in range(100):
            sink.send([("k", b'{"type":"llm_call"}\n')], stats)
    assert stats.failed == 100
    assert len([r for r in caplog.records if "spool write" in r.getMessage()]) == 1


# -- item 6: bad arguments never raise --------------------------------------------------------------

def test_bad_decorator_arguments_never_raise(sink):
    @llmsight.monitor(tags=5)
    def a(q):
        return "a"

    @llmsight.monitor(name=42, model=object(), prompt_version=["v"], tags={1: object()})
    def b(q):
        return "b"

    @llmsight.monitor("positional-name")
    def c(q):
        return "c"

    class BrokenStr:
        def __str__(self):
            raise RuntimeError("no")

    not_a_function = llmsight.monitor(5)
    with llmsight.context(user_id=BrokenStr(), tags=7):
        assert (a("q"), b("q"), c("q")) == ("a", "b", "c")
    llmsight.feedback(BrokenStr(), comment=BrokenStr(), user_id=BrokenStr())
    assert callable(not_a_function) or not_a_function == 5
    events = [e for e in flushed(sink) if e["type"] == "llm_call"]
    assert [e["output"] for e in events] == ["a", "b", "c"]
    assert events[1]["name"] == "42" and events[0]["tags"] == {}


# -- item 10 (SDK half): heartbeats -----------------------------------------------------------------

def test_flush_sends_a_heartbeat_with_the_cumulative_counters(sink):
    @llmsight.monitor
    def ask(q):
        return "a"

    for _ in range(3):
        ask("q")
    llmsight.feedback("t", accepted=True)
    flushed(sink)
    beat = sink.heartbeats[-1]
    assert set(HEARTBEAT_FIELDS) <= set(beat) and beat["type"] == "heartbeat"
    assert (beat["service"], beat["environment"], beat["pid"]) == ("svc", "test", os.getpid())
    assert beat["sent"] == 4 and beat["dropped"] == beat["spilled"] == beat["failed"] == 0
    assert llmsight.stats()["sent"] == 4  # heartbeats are not counted as sent
    # Each llm_call and feedback names its producer (an envelope field the collector's audit counts by).
    assert {e["producer_id"] for e in sink.events} == {beat["producer_id"]}
    ask("q")
    flushed(sink)
    later = sink.heartbeats[-1]
    assert later["producer_id"] == beat["producer_id"] and later["sent"] == 5  # cumulative


def test_heartbeats_are_periodic_and_shutdown_sends_the_last(monkeypatch):
    monkeypatch.setenv("LLMSIGHT_HEARTBEAT_S", "0.2")
    memory = MemorySink()
    llmsight.init(sink=memory, flush_interval=0.05)
    try:
        time.sleep(1.0)
        assert len(memory.heartbeats) >= 3
    finally:
        llmsight.shutdown(2)
    assert memory.heartbeats[-1]["sent"] == 0
    count = len(memory.heartbeats)
    monkeypatch.setenv("LLMSIGHT_HEARTBEAT_S", "0")
    llmsight.init(sink=memory, flush_interval=0.05)
    llmsight.flush(2)
    llmsight.shutdown(2)
    assert len(memory.heartbeats) == count  # 0 turns heartbeats off


def test_a_forked_child_is_a_new_producer(tmp_path):
    spool = tmp_path / "spool"
    llmsight.init(sink=f"file://{spool}")

    @llmsight.monitor
    def ask(q):
        return "a"

    try:
        ask("parent")
        assert llmsight.flush(5)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ask("child")
                code = 0 if llmsight.flush(5) else 2
                llmsight.shutdown(2)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        llmsight.shutdown(2)
    beats = [json.loads(raw) for s in list_segments(spool) for _, _, raw in read_lines(s.path)]
    beats = [b for b in beats if b["type"] == "heartbeat"]
    producers = {b["pid"]: b["producer_id"] for b in beats}
    assert set(producers) == {os.getpid(), pid} and len(set(producers.values())) == 2
    assert max(b["sent"] for b in beats if b["pid"] == pid) == 1  # the child's own counters, from zero
