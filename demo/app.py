"""The demo's synthetic LLM application: a banking assistant that calls the stand-in model through the real SDK.

Customer prompts come from :class:`~llmsight.demo.traffic.TrafficGenerator`; the stand-in model
(:func:`llmsight.demo.model.answer`) replies like an OpenAI chat completion; users give feedback on
most answers (:func:`llmsight.demo.model.user_feedback`). Every call goes through
``@llmsight.monitor`` and every verdict through ``llmsight.feedback``, exactly as a real app would,
into the sink given to :class:`SyntheticApp` (a spool directory in the demo).

At ``switch_at`` the app ships prompt version ``v2``: new topics appear, some answers turn abusive,
and users accept fewer answers. Events carry real wall-clock times: there is no simulated clock.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from datetime import datetime, timezone
from typing import Any

import llmsight
from llmsight.demo import model
from llmsight.demo.traffic import Prompt, TrafficGenerator

log = logging.getLogger("llmsight.demo")

SERVICE = "demo-bank"
FEATURE = "assistant"
FEEDBACK_SHARE = 0.8  # share of answers users react to


class SyntheticApp:
    """Sends ``rate`` calls a second (and their feedback) until stopped; v1 before ``switch_at``, v2 after.

    A dispatcher thread draws the prompts in order and hands each call to a set of worker threads,
    like concurrent requests to a web app: the stand-in model sleeps ``latency_scale`` times its
    simulated latency, so calls overlap and the recorded latencies look like a hosted model's.
    """

    def __init__(self, sink_url: str, switch_at: datetime, *, rate: float = 8.0, seed: int = 7,
                 latency_scale: float = 0.5, workers: int = 24) -> None:
        self.sink_url = sink_url
        self.switch_at = switch_at
        self.rate = rate
        self.seed = seed
        self.latency_scale = latency_scale
        self.workers = workers
        self.generator = TrafficGenerator(seed=seed)
        self.calls = {"v1": 0, "v2": 0}
        self.feedback_sent = 0
        self.errors = 0
        self._counts = threading.Lock()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._answer = {version: self._monitored(version) for version in ("v1", "v2")}

    def _monitored(self, version: str) -> Any:
        @llmsight.monitor(name=FEATURE, model=model.MODEL, prompt_version=version)
        def ask(prompt: str) -> model.Response:
            # The SDK records ``prompt`` (the text); the stand-in also gets the intent behind it.
            return model.answer(self._local.prompt, version, rng=self._local.rng, latency_scale=self.latency_scale)

        return ask

    def version_at(self, now: datetime) -> str:
        return "v2" if now >= self.switch_at else "v1"

    def call_once(self, prompt: Prompt, index: int) -> None:
        """One customer question, the model's answer and (most of the time) the customer's verdict."""
        version = prompt.version
        rng = random.Random(f"llmsight-demo-{self.seed}-{index}")
        self._local.prompt, self._local.rng = prompt, rng
        response = None
        failed = False
        with llmsight.context(user_id=prompt.user_id, session_id=prompt.session_id):
            try:
                response = self._answer[version](prompt=prompt.text)
            except model.ModelError:
                failed = True  # the SDK recorded the error; the app shows the user an apology
            trace_id = llmsight.current_trace_id()
        gave_feedback = bool(trace_id) and rng.random() < FEEDBACK_SHARE
        if gave_feedback:
            verdict = model.user_feedback(prompt, response, version, rng)
            llmsight.feedback(trace_id, accepted=verdict["accepted"], score=verdict["score"],
                              comment=verdict["comment"] or None, edited_output=verdict["edited_output"] or None)
        with self._counts:
            self.calls[version] += 1
            self.errors += failed
            self.feedback_sent += gave_feedback

    def _safe_call(self, prompt: Prompt, index: int) -> None:
        try:
            self.call_once(prompt, index)
        except Exception:
            log.exception("demo: a synthetic call failed")

    def _worker(self, calls: queue.Queue[tuple[Prompt, int] | None]) -> None:
        while True:
            item = calls.get()
            if item is None:
                return
            self._safe_call(*item)

    def run(self, stop: threading.Event | None = None) -> None:
        """Dispatch ``rate`` calls a second to the worker threads until ``stop`` (or :meth:`stop`) is set."""
        stop = stop or self._stop
        llmsight.init(sink=self.sink_url, service=SERVICE, environment="demo", flush_interval=0.5)
        # Daemon threads rather than a ThreadPoolExecutor: the executor's exit hook would wait for
        # calls still sleeping through a simulated 20-second timeout.
        calls: queue.Queue[tuple[Prompt, int] | None] = queue.Queue()
        for i in range(self.workers):
            threading.Thread(target=self._worker, args=(calls,), name=f"llmsight-demo-user-{i}", daemon=True).start()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        log.info("demo: synthetic app sending %.0f calls/s to %s; v2 ships at %s", self.rate, self.sink_url,
                 self.switch_at.isoformat())
        index = 0
        while not stop.is_set() and not self._stop.is_set():
            calls.put((self.generator.next(self.version_at(datetime.now(timezone.utc))), index))
            index += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()  # running late: do not burst to catch up
        for _ in range(self.workers):
            calls.put(None)
        llmsight.flush(5.0)
        log.info("demo: synthetic app stopped after %s calls (%d failed) and %d feedback events", self.calls,
                 self.errors, self.feedback_sent)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="llmsight-demo-app", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        llmsight.shutdown(5.0)  # close the spool segment now, while its directory still exists
