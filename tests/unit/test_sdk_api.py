"""The public SDK API: the decorator on every kind of function, context, trace ids, feedback."""

from __future__ import annotations

import asyncio
import contextvars
import json
from types import SimpleNamespace

import pytest

import llmsight
from llmsight import client as sdk_client
from llmsight.schema import validate
from llmsight.sinks import MemorySink


@pytest.fixture
def sink():
    memory = MemorySink()
    llmsight.init(sink=memory, service="svc", environment="test", redact=False)
    yield memory
    llmsight.shutdown(2)


def events(sink: MemorySink) -> list[dict]:
    assert llmsight.flush(5) is True
    for event in sink.events:
        validate(event)  # everything the SDK writes passes the collector's schema check
    return list(sink.events)


def test_exported_members():
    assert sorted(llmsight.__all__) == sorted(
        ["init", "monitor", "feedback", "context", "current_trace_id", "flush", "shutdown", "stats", "__version__"]
    )
    assert llmsight.__version__ == "0.1.0"
    for name in llmsight.__all__:
        assert hasattr(llmsight, name)


def test_bare_decorator_records_input_output_latency(sink):
    @llmsight.monitor
    def answer(question):
        return "42"

    assert answer("what is the answer?") == "42"
    [event] = events(sink)
    assert event["type"] == "llm_call"
    assert event["name"].endswith("answer")
    assert event["input"] == "what is the answer?"
    assert event["output"] == "42"
    assert event["service"] == "svc" and event["environment"] == "test"
    assert event["error"] is None and event["parent_id"] is None
    assert event["latency_ms"] >= 0
    assert sink.keys == [event["trace_id"]]


def test_decorator_with_arguments_and_tags(sink):
    @llmsight.monitor(name="ask", model="gpt-4o-mini", prompt_version="v3", tags={"team": "support"})
    def ask(prompt, temperature=0.2):
        return "ok"

    ask(prompt="hi", temperature=0.5)
    [event] = events(sink)
    assert (event["name"], event["model"], event["prompt_version"]) == ("ask", "gpt-4o-mini", "v3")
    assert event["input"] == "hi"  # a prompt= keyword is the input text
    assert event["tags"] == {"team": "support"}


def test_other_arguments_render_as_json_like_text(sink):
    @llmsight.monitor
    def classify(text, labels, top_k=1):
        return ["a"]

    classify("x", ["a", "b"], top_k=2)
    [event] = events(sink)
    assert json.loads(event["input"]) == {"text": "x", "labels": ["a", "b"], "top_k": 2}
    assert event["output"] == '["a"]'


def test_exception_is_recorded_and_reraised_unchanged(sink):
    class Boom(Exception):
        pass

    original = Boom("rate limited")

    @llmsight.monitor
    def failing(q):
        raise original

    with pytest.raises(Boom) as caught:
        failing("q")
    assert caught.value is original
    [event] = events(sink)
    assert event["error"] == "Boom: rate limited"
    assert event["error_type"] == "Boom"
    assert event["output"] is None


def test_openai_shaped_response_gives_text_usage_model_and_cost(sink):
    response = SimpleNamespace(
        model="gpt-4o-mini-2024-07-18",
        choices=[SimpleNamespace(message=SimpleNamespace(role="assistant", content="Paris"))],
        usage=SimpleNamespace(prompt_tokens=1000, completion_tokens=2000),
    )

    @llmsight.monitor
    def chat(messages):
        return response

    chat(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "capital of France?"}])
    [event] = events(sink)
    assert event["input"] == "system: be brief\nuser: capital of France?"
    assert event["output"] == "Paris"
    assert (event["tokens_in"], event["tokens_out"]) == (1000, 2000)
    assert event["model"] == "gpt-4o-mini-2024-07-18"
    # gpt-4o-mini: 0.15 in, 0.60 out USD per 1M tokens (prefix match on the dated snapshot).
    assert event["cost_usd"] == pytest.approx((1000 * 0.15 + 2000 * 0.60) / 1e6)


def test_anthropic_shaped_dict_response(sink):
    @llmsight.monitor(model="claude-3-5-haiku")
    def call(prompt):
        return {"content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
                "usage": {"input_tokens": 10, "output_tokens": 4}}

    call("hi")
    [event] = events(sink)
    assert event["output"] == "Hello there"
    assert (event["tokens_in"], event["tokens_out"]) == (10, 4)
    assert event["cost_usd"] == pytest.approx((10 * 0.80 + 4 * 4.00) / 1e6)


def test_init_prices_override_and_unknown_model(sink):
    llmsight.init(sink=sink, prices={"my-model": [1.0, 2.0]})

    @llmsight.monitor
    def call(model):
        return {"usage": {"prompt_tokens": 500_000, "completion_tokens": 250_000}, "choices": [{"text": "t"}]}

    call(model="my-model")
    call(model="unknown-model")
    first, second = events(sink)
    assert first["cost_usd"] == pytest.approx(0.5 + 0.5)
    assert first["model"] == "my-model"
    assert second["cost_usd"] is None and second["tokens_in"] == 500_000


def test_prices_file_from_environment(sink, tmp_path, monkeypatch):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"house-llm": [10, 20]}))
    monkeypatch.setenv("LLMSIGHT_PRICES", str(prices))
    llmsight.init(sink=sink)

    @llmsight.monitor(model="house-llm")
    def call(q):
        return {"usage": {"input_tokens": 100, "output_tokens": 100}, "content": "x"}

    call("q")
    [event] = events(sink)
    assert event["cost_usd"] == pytest.approx((100 * 10 + 100 * 20) / 1e6)


def test_async_function(sink):
    @llmsight.monitor(name="aask")
    async def aask(q):
        await asyncio.sleep(0.01)
        return q.upper()

    assert asyncio.run(aask("hi")) == "HI"
    [event] = events(sink)
    assert (event["name"], event["input"], event["output"]) == ("aask", "hi", "HI")
    assert event["latency_ms"] >= 10


def test_generator_assembles_chunks_and_records_ttft(sink):
    @llmsight.monitor
    def stream(q):
        yield "Hel"
        yield "lo"
        return "done"

    gen = stream("q")
    assert list(gen) == ["Hel", "lo"]
    [event] = events(sink)
    assert event["output"] == "Hello"
    assert event["ttft_ms"] is not None and 0 <= event["ttft_ms"] <= event["latency_ms"]
    assert event["metadata"] == {"stream": True, "chunks": 2}


def test_generator_closed_early_records_partial_output(sink):
    @llmsight.monitor
    def stream(q):
        yield "a"
        yield "b"
        yield "c"

    for chunk in stream("q"):
        if chunk == "b":
            break
    [event] = events(sink)
    assert event["output"] == "ab"


def test_generator_error_reraised(sink):
    @llmsight.monitor
    def stream(q):
        yield "a"
        raise KeyError("gone")

    with pytest.raises(KeyError):
        list(stream("q"))
    [event] = events(sink)
    assert event["output"] == "a" and event["error_type"] == "KeyError"


def test_async_generator_with_openai_chunks(sink):
    def chunk(text=None, usage=None):
        return SimpleNamespace(model="gpt-4o", choices=[SimpleNamespace(delta=SimpleNamespace(content=text))] if text else [],
                               usage=usage)

    @llmsight.monitor
    async def stream(q):
        for part in ("The ", "answer"):
            yield chunk(part)
        yield chunk(usage=SimpleNamespace(prompt_tokens=7, completion_tokens=2))

    async def consume():
        return [c async for c in stream("q")]

    assert len(asyncio.run(consume())) == 3
    [event] = events(sink)
    assert event["output"] == "The answer"
    assert (event["tokens_in"], event["tokens_out"], event["model"]) == (7, 2, "gpt-4o")


def test_anthropic_stream_events(sink):
    @llmsight.monitor
    def stream(q):
        yield {"type": "message_start", "message": {"model": "claude-3-haiku", "usage": {"input_tokens": 12}}}
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Bon"}}
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "jour"}}
        yield {"type": "message_delta", "usage": {"output_tokens": 3}}

    list(stream("q"))
    [event] = events(sink)
    assert (event["output"], event["tokens_in"], event["tokens_out"], event["model"]) == ("Bonjour", 12, 3, "claude-3-haiku")


def test_methods_skip_self_and_classmethods_work(sink):
    class Bot:
        @llmsight.monitor
        def reply(self, text):
            return text[::-1]

        @llmsight.monitor
        @classmethod
        def make(cls, text):
            return text

    assert Bot().reply("abc") == "cba"
    assert Bot.make("x") == "x"
    first, second = events(sink)
    assert first["input"] == "abc" and first["name"].endswith("Bot.reply")
    assert second["input"] == "x"


def test_nested_calls_share_trace_and_record_parent(sink):
    @llmsight.monitor
    def inner(q):
        return "inner"

    @llmsight.monitor
    def outer(q):
        inner_trace = llmsight.current_trace_id()
        inner(q)
        return inner_trace

    trace_seen_inside = outer("q")
    inner_event, outer_event = events(sink)
    assert inner_event["trace_id"] == outer_event["trace_id"] == trace_seen_inside
    assert inner_event["parent_id"] == outer_event["event_id"]
    assert outer_event["parent_id"] is None
    assert inner_event["event_id"] != outer_event["event_id"]


def test_current_trace_id_after_return_sync_and_async(sink):
    @llmsight.monitor
    def ask(q):
        return "a"

    @llmsight.monitor
    async def aask(q):
        return "b"

    assert llmsight.current_trace_id() is None or isinstance(llmsight.current_trace_id(), str)
    ask("q")
    sync_trace = llmsight.current_trace_id()

    async def main():
        await aask("q")
        return llmsight.current_trace_id()

    async_trace = asyncio.run(main())
    first, second = events(sink)
    assert sync_trace == first["trace_id"]
    assert async_trace == second["trace_id"]
    assert sync_trace != async_trace


def test_context_user_session_tags_and_nesting(sink):
    @llmsight.monitor(tags={"feature": "faq"})
    def ask(q):
        return "a"

    with llmsight.context(user_id="u1", session_id="s1", tags={"plan": "pro"}):
        with llmsight.context(tags=["beta"]):
            ask("q")
        ask("q2")
    ask("q3")
    first, second, third = events(sink)
    assert (first["user_id"], first["session_id"]) == ("u1", "s1")
    assert first["tags"] == {"plan": "pro", "beta": "true", "feature": "faq"}
    assert second["tags"] == {"plan": "pro", "feature": "faq"}
    assert (third["user_id"], third["tags"]) == (None, {"feature": "faq"})


def test_context_is_isolated_between_asyncio_tasks(sink):
    @llmsight.monitor
    async def ask(q):
        await asyncio.sleep(0.01)
        return q

    async def user(uid):
        with llmsight.context(user_id=uid):
            await ask(uid)

    async def main():
        await asyncio.gather(user("a"), user("b"))

    asyncio.run(main())
    by_input = {e["input"]: e["user_id"] for e in events(sink)}
    assert by_input == {"a": "a", "b": "b"}


def test_feedback_event(sink):
    @llmsight.monitor
    def ask(q):
        return "a"

    ask("q")
    trace = llmsight.current_trace_id()
    llmsight.feedback(trace, accepted=False, score=0.25, comment="wrong", edited_output="b", user_id="u9")
    _, fb = events(sink)
    assert fb["type"] == "feedback"
    assert (fb["trace_id"], fb["accepted"], fb["score"], fb["comment"], fb["edited_output"], fb["user_id"]) == (
        trace, False, 0.25, "wrong", "b", "u9")


def test_feedback_with_nan_score_still_writes_event(sink):
    llmsight.feedback("t-1", score=float("nan"))
    [fb] = events(sink)
    assert fb["score"] is None and fb["trace_id"] == "t-1"


def test_sampling_is_decided_per_trace(sink):
    llmsight.init(sink=sink, sample_rate=0.5)

    @llmsight.monitor
    def inner(q):
        return q

    @llmsight.monitor
    def outer(q):
        return inner(q)

    for i in range(400):
        outer(str(i))
    got = events(sink)
    traces: dict[str, int] = {}
    for event in got:
        traces[event["trace_id"]] = traces.get(event["trace_id"], 0) + 1
    assert set(traces.values()) == {2}  # never half a trace
    assert 120 < len(traces) < 280  # about half of 400, far from 0 and 400


def test_sample_rate_zero_records_nothing_but_runs_calls(sink):
    llmsight.init(sink=sink, sample_rate=0.0)

    @llmsight.monitor
    def ask(q):
        return q * 2

    assert ask("ab") == "abab"
    assert events(sink) == []


def test_list_arguments_are_recorded_as_at_call_time(sink):
    @llmsight.monitor
    def chat(messages):
        return "reply"

    history = [{"role": "user", "content": "hi"}]
    chat(history)
    history.append({"role": "assistant", "content": "reply"})
    [event] = events(sink)
    assert event["input"] == "user: hi"


def test_the_function_gets_the_callers_own_arguments(sink):
    # A common pattern: the LLM call appends its reply to the caller's conversation. The decorator
    # must not hand the function copies (it copies only what it records).
    @llmsight.monitor
    def chat(messages, options):
        messages.append({"role": "assistant", "content": "reply"})
        options["seen"] = True
        return "reply"

    history = [{"role": "user", "content": "hi"}]
    options: dict = {}
    chat(history, options=options)
    assert history[-1] == {"role": "assistant", "content": "reply"} and options == {"seen": True}
    [event] = events(sink)
    assert event["input"] == '{"messages": [{"role": "user", "content": "hi"}], "options": {}}'  # as passed


def test_disabled_runs_untouched(monkeypatch):
    memory = MemorySink()
    llmsight.init(sink=memory, disabled=True)

    @llmsight.monitor
    def ask(q):
        return llmsight.current_trace_id()

    try:
        assert contextvars.Context().run(ask, "q") is None  # no span was opened
        assert llmsight.flush(1) is True
        assert memory.events == []
        assert llmsight.stats() == {"sent": 0, "dropped": 0, "spilled": 0, "failed": 0}
    finally:
        llmsight.shutdown(1)


def test_first_call_configures_from_environment(tmp_path, monkeypatch):
    llmsight.shutdown(1)
    monkeypatch.setattr(sdk_client._state, "configured", False)
    monkeypatch.setenv("LLMSIGHT_SINK", f"file://{tmp_path}/spool")
    monkeypatch.setenv("LLMSIGHT_SERVICE", "from-env")

    @llmsight.monitor
    def ask(q):
        return "a"

    try:
        ask("q")
        assert llmsight.flush(5) is True
        [segment] = list((tmp_path / "spool").iterdir())
        event = json.loads(segment.read_text().splitlines()[0])
        assert event["service"] == "from-env" and event["input"] == "q"
    finally:
        llmsight.shutdown(2)


def test_llmsight_disabled_env_before_init(monkeypatch):
    llmsight.shutdown(1)
    monkeypatch.setattr(sdk_client._state, "configured", False)
    monkeypatch.setenv("LLMSIGHT_DISABLED", "1")

    @llmsight.monitor
    def ask(q):
        return "a"

    assert ask("q") == "a"
    assert sdk_client._state.client is None and sdk_client._state.disabled is True


def test_bad_sink_url_falls_back_to_default_spool(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))

    @llmsight.monitor
    def ask(q):
        return "a"

    llmsight.init(sink="ftp://nowhere/x")
    try:
        assert ask("q") == "a"
        assert llmsight.flush(5) is True
        spool = tmp_path / ".llmsight" / "spool"
        assert len(list(spool.iterdir())) == 1
        assert "cannot use sink 'ftp://nowhere/x'" in caplog.text
    finally:
        llmsight.shutdown(2)


def test_after_shutdown_calls_run_unmonitored(sink):
    @llmsight.monitor
    def ask(q):
        return "a"

    llmsight.shutdown(2)
    assert ask("q") == "a"
    assert sink.events == []


def test_stats_still_report_after_shutdown(sink):
    @llmsight.monitor
    def ask(q):
        return "a"

    ask("q")
    assert llmsight.shutdown(2) is True
    assert llmsight.stats() == {"sent": 1, "dropped": 0, "spilled": 0, "failed": 0}
    llmsight.init(sink=MemorySink())
    assert llmsight.stats() == {"sent": 0, "dropped": 0, "spilled": 0, "failed": 0}


def test_bad_init_arguments_are_logged_once_and_replaced_by_their_defaults(monkeypatch, caplog):
    from llmsight import config

    monkeypatch.setattr(config, "_warned", set())  # "once" is per process: start this test afresh
    memory = MemorySink()
    bad = dict(service="  ", sample_rate=2.0, max_text_chars=True, queue_size=0, batch_size="many",
               flush_interval=-1.0, disabled="perhaps")
    try:
        for _ in range(2):
            llmsight.init(sink=memory, redact=False, **bad)
        client = sdk_client._state.client
        assert (client.service, client.sample_rate, client.max_text_chars) == (
            config.SERVICE.default, config.SAMPLE_RATE.default, config.MAX_TEXT_CHARS.default)
        worker = client.worker
        assert (worker._maxlen, worker._batch_size, worker._interval) == (
            config.QUEUE_SIZE.default, config.BATCH_SIZE.default, config.FLUSH_INTERVAL_S.default)
        assert sdk_client._state.disabled is False

        @llmsight.monitor
        def ask(q):
            return "a"

        assert ask("q") == "a"
        [event] = events(memory)
        assert event["service"] == config.SERVICE.default
    finally:
        llmsight.shutdown(2)
    warned = [r.getMessage() for r in caplog.records if "(an argument) is not valid" in r.getMessage()]
    named = sorted(message.split("=")[0].removeprefix("llmsight: ") for message in warned)
    assert named == sorted(["LLMSIGHT_SERVICE", "LLMSIGHT_SAMPLE_RATE", "LLMSIGHT_MAX_TEXT_CHARS",
                            "LLMSIGHT_QUEUE_SIZE", "LLMSIGHT_BATCH_SIZE", "LLMSIGHT_FLUSH_INTERVAL_S",
                            "LLMSIGHT_DISABLED"])  # each once, though init ran twice


def test_init_arguments_are_read_by_the_variables_parsers():
    memory = MemorySink()
    try:
        llmsight.init(sink=memory, service=" svc ", sample_rate="0.5", queue_size="7", disabled="no", redact="off")
        client = sdk_client._state.client
        assert (client.service, client.sample_rate, client.worker._maxlen) == ("svc", 0.5, 7)
        assert client.redactor is None
        llmsight.init(sink=memory, disabled="yes")
        assert sdk_client._state.client is None and sdk_client._state.disabled is True
    finally:
        llmsight.shutdown(2)


def test_init_never_raises_and_calls_then_run_unmonitored(monkeypatch, caplog):
    def broken(**_):
        raise RuntimeError("client construction failed")

    monkeypatch.setattr(sdk_client, "Client", broken)
    assert llmsight.init(sink=MemorySink()) is None
    assert "init failed" in caplog.text and "client construction failed" in caplog.text

    @llmsight.monitor
    def ask(q):
        return "a"

    assert ask("q") == "a" and sdk_client._state.client is None
