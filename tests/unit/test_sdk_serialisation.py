"""Bad input never raises into the caller and still produces a valid event (hypothesis + edge cases)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmsight
from llmsight.schema import validate
from llmsight.serialize import clean_text, encode_line, render, uuid_text
from llmsight.sinks import MemorySink


class BadRepr:
    def __repr__(self):
        raise RuntimeError("repr exploded")

    def __str__(self):
        raise RuntimeError("str exploded")


class Opaque:
    __slots__ = ()


def _recursive_list():
    items: list = [1]
    items.append(items)
    return items


def _recursive_dict():
    node: dict = {"a": 1}
    node["self"] = node
    return node


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.one_of(st.characters(), surrogates), max_size=30).map("".join)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts,
    st.binary(max_size=64), st.builds(BadRepr), st.builds(Opaque), st.builds(_recursive_list),
    st.builds(_recursive_dict), st.integers(min_value=10**5000, max_value=10**5000 + 10),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(texts, st.integers()), inner, max_size=4),
    st.tuples(inner, inner)), max_leaves=12)


@pytest.fixture(scope="module")
def sink():
    memory = MemorySink()
    llmsight.init(sink=memory, redact=True, max_text_chars=2000)
    yield memory
    llmsight.shutdown(2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(arg=values, kwarg=values, result=values)
def test_any_value_produces_one_valid_event(sink, arg, kwarg, result):
    @llmsight.monitor(tags={"k": "v"})
    def call(a, extra=None):
        return result

    before = len(sink.events)
    assert call(arg, extra=kwarg) is result  # the host's return value, untouched
    assert llmsight.flush(5) is True
    assert len(sink.events) == before + 1
    line = sink.lines[-1]
    line.decode("utf-8")  # strict: no lone surrogate made it into the bytes
    event = json.loads(line)
    validate(event)
    assert event["input"] is not None and event["output"] is not None or result is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(error_text=texts, score=st.floats(allow_nan=True, allow_infinity=True), comment=texts)
def test_exceptions_and_feedback_with_bad_text(sink, error_text, score, comment):
    @llmsight.monitor
    def call(q):
        raise ValueError(error_text)

    before = len(sink.events)
    with pytest.raises(ValueError):
        call(error_text)
    llmsight.feedback(error_text or "t", score=score, comment=comment, edited_output=comment)
    assert llmsight.flush(5) is True
    assert len(sink.events) == before + 2
    for line in sink.lines[-2:]:
        validate(json.loads(line.decode("utf-8")))
    fb = sink.events[-1]
    assert fb["score"] == (score if math.isfinite(score) else None)


def test_ten_megabyte_string_is_truncated_and_flagged(sink):
    huge = "é" * (10 * 1024 * 1024)

    @llmsight.monitor
    def call(q):
        return q

    assert call(huge) is huge
    assert llmsight.flush(10) is True
    event = sink.events[-1]
    assert event["input"] == "é" * 2000 and event["output"] == "é" * 2000
    assert event["truncated"] is True


def test_exception_with_broken_str_is_reraised_and_recorded(sink):
    class Weird(Exception):
        def __str__(self):
            raise RuntimeError("nope")

    @llmsight.monitor
    def call(q):
        raise Weird()

    with pytest.raises(Weird):
        call(BadRepr())
    assert llmsight.flush(5)
    event = sink.events[-1]
    assert event["error_type"] == "Weird" and event["error"].startswith("Weird: ")
    assert event["input"] == '{"q": "<unrepresentable BadRepr>"}'


def test_render_is_bounded_and_handles_cycles():
    assert render(list(range(10**6)), 50).endswith("…")
    assert len(render(list(range(10**6)), 50)) <= 51
    assert render(_recursive_list(), 100) == '[1, "<recursion>"]'
    assert render({"b": b"\xff\x00ok"}, 100) == '{"b": "\ufffd\\u0000ok"}'
    assert render(float("nan"), 10) == "nan"


def test_clean_text_and_encode_line():
    assert clean_text("a\ud800b") == "a\ufffdb"
    assert clean_text("plain") == "plain"
    line = encode_line({"x": float("inf"), "y": "z\udfff", "n": float("nan")})
    assert line.endswith(b"\n") and json.loads(line) == {"x": None, "y": "z\ufffd", "n": None}


def test_uuid_text_is_a_version_4_uuid():
    import uuid

    parsed = uuid.UUID(uuid_text((1 << 128) - 1))
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert uuid_text(0) == "00000000-0000-4000-8000-000000000000"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=st.one_of(
    st.text(max_size=40),
    st.text(max_size=20).map(lambda rest: "kafka://" + rest),
    st.just("kafka://127.0.0.1:{port}/llm.events"),
    st.sampled_from(["file://", "kafka://:9092/t", "kafka://host/t", "kafka://127.0.0.1:{port}"]),
))
def test_wrong_or_unreachable_sink_url_never_raises_and_accounts_for_the_event(tmp_path, monkeypatch, url):
    monkeypatch.setenv("HOME", str(tmp_path))  # the fallback spool lives under ~/.llmsight
    monkeypatch.setenv("LLMSIGHT_SPILL_DIR", str(tmp_path / "spill"))
    llmsight.init(sink=url.replace("{port}", str(_closed_port())), flush_interval=0.05)

    @llmsight.monitor
    def call(q):
        return "fine"

    try:
        assert call("q") == "fine"
        llmsight.flush(5)
    finally:
        llmsight.shutdown(3)
    counts = llmsight.stats()
    assert counts["sent"] + counts["spilled"] + counts["failed"] == 1
    assert counts["dropped"] == 0
