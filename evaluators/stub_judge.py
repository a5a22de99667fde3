"""A STAND-IN for an LLM judge: a tiny OpenAI-compatible HTTP server for the demo, the benchmark and
the tests. It is not a model and its scores mean little; point evaluators at a real endpoint
(Ollama, vLLM, llama.cpp server, OpenAI, Azure) for real judgements.

``POST /v1/chat/completions`` answers with one JSON verdict. The score is a fixed word rule on the
texts of the judge prompt, not a judgement: 1 for a refusal ("I can't", "I can only help with") or an
insult, else 3 to 5 by how many of the question's words the answer repeats, one less for a sales
pitch ("upgrade", "premium", "check it out"). ``script`` scripts faults for tests, one entry per request in
order (then back to normal answers): ``ok``, ``malformed`` (text without JSON), ``fenced`` (JSON in a
code fence), ``bad_score``, ``429``, ``500``, ``slow`` (sleeps ``slow_s`` first). ``delay_s`` adds a
fixed latency to every request (the benchmark's stand-in for a model's time).

    python -m llmsight.evaluators.stub_judge --port 8765    # then judge.base_url: http://127.0.0.1:8765/v1
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORDS = re.compile(r"[a-z]{4,}")
_REFUSAL = re.compile(r"\b(i can(?:no|')t help|i can only help|unable to help|not able to help)\b", re.I)
_INSULT = re.compile(r"\b(idiot|moron|stupid|dumb|useless|shut up|whining|nobody cares)\b", re.I)
_PITCH = re.compile(r"\b(upgrade|premium|check it out|have you seen our|special offer)\b", re.I)
_SECTION = re.compile(r"(?:request|question):\n(.*?)\n\n(?:answer):\n(.*)", re.S | re.I)


def stub_score(message: str) -> tuple[int, str, str]:
    """(score 1-5, label, reason) of a judge prompt, by the stand-in rule in the module docstring."""
    match = _SECTION.search(message)
    question, answer = (match.group(1), match.group(2)) if match else ("", message)
    if _REFUSAL.search(answer):
        return 1, "refusal", "the answer refuses"
    if _INSULT.search(answer):
        return 1, "abusive", "the answer insults the user"
    asked = set(_WORDS.findall(question.lower()))
    shared = len(asked & set(_WORDS.findall(answer.lower())))
    score = 3 + min(2, shared) - (1 if _PITCH.search(answer) else 0)
    reason = f"{shared} of the question's words answered" + (", with a sales pitch" if _PITCH.search(answer) else "")
    return score, "helpful" if score >= 4 else "partial", reason


class StubJudgeServer:
    """The stand-in server on 127.0.0.1 (a free port unless given), on a daemon thread."""

    def __init__(self, port: int = 0, *, delay_s: float = 0.0, slow_s: float = 5.0) -> None:
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.script: list[str] = []
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-judge", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> StubJudgeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubJudgeServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _next(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            return self.script.pop(0) if self.script else "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": "not found"}})
                stub.authorizations.append(self.headers.get("Authorization", ""))
                step = stub._next(body)
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                if step == "429":
                    return self._json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": "0.05"})
                if step == "500":
                    return self._json(500, {"error": {"message": "server error"}})
                if step == "slow":
                    time.sleep(stub.slow_s)
                message = str((body.get("messages") or [{}])[-1].get("content", ""))
                score, label, reason = stub_score(message)
                verdict = json.dumps({"score": score, "label": label, "reason": reason})
                content = {"malformed": "I think the answer is pretty good overall.",
                           "fenced": f"Here is my verdict:\n```json\n{verdict}\n```",
                           "bad_score": json.dumps({"score": 11, "label": "x", "reason": "y"})}.get(step, verdict)
                prompt_tokens = max(1, len(json.dumps(body.get("messages", ""))) // 4)
                completion_tokens = max(1, len(content) // 4)
                return self._json(200, {
                    "id": f"stub-{stub.requests}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}})

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in OpenAI-compatible judge (not a model).")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    server = StubJudgeServer(args.port, delay_s=args.delay_s)
    print(f"stub judge (not a model) on {server.base_url}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
