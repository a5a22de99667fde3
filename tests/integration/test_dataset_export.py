"""``llmsight dataset export`` on seeded calls in a real chdb store: rows per file, what each filter
removed, a preference pair per edited answer, redaction, and the evaluators' scores."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmsight.review.dataset import export_dataset, parse_segment
from llmsight.review.labels import EVALUATIONS, Label, save_labels
from llmsight.store import EVENT_COLUMNS, FEEDBACK_COLUMNS

START = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=3)
END = START + dt.timedelta(days=1)
BOT = ("support-bot", "answer", "model-a", "v1")
SEARCH = ("search", "answer", "model-b", "v2")


def event(minute: int, trace_id: str, prompt: str, output: str, segment=BOT, error: str = "") -> list[object]:
    row = dict(event_id=uuid.uuid4(), trace_id=trace_id, parent_id="", ts=START + dt.timedelta(minutes=minute),
               service=segment[0], environment="production", name=segment[1], model=segment[2],
               prompt_version=segment[3], input=prompt, output=output, error=error, error_type="", latency_ms=300.0,
               ttft_ms=None, tokens_in=10, tokens_out=20, cost_usd=0.001, user_id="u1", session_id="s1", tags={},
               metadata="", truncated=0, source="test")
    return [row[c] for c in EVENT_COLUMNS]


def feedback(trace_id: str, accepted: int | None, edited: str = "", score: float | None = None) -> list[object]:
    return [uuid.uuid4(), trace_id, START + dt.timedelta(hours=2), accepted, score, "", edited, "u1", "test"]


@pytest.fixture
def seeded(store_client):
    client = store_client
    calls = [
        event(1, "c1", "How do I reset my PIN?", "Open Card settings, then PIN."),
        event(2, "c2", "Mail me at jane.doe@example.com please", "I will send it there."),
        event(3, "c3", "Refund for order 7?", "Order 9 was refunded."),
        event(4, "c4", "Opening hours?", "We never open."),
        event(5, "c5", "Branch near me?", "Main street."),
        event(6, "c6", "Card limit?", "", error="timed out"),
        event(7, "c7", "Search my invoices", "Here are 3 invoices.", segment=SEARCH),
        event(8, "c8", "How do I reset my PIN?", "Open Card settings, then PIN."),
        event(9, "c9", "Is the app down?", "No, it is up."),
        event(10, "c10", "Fees abroad?", "None in the EU."),
        event(60 * 30, "c11", "Out of range", "Not exported."),
    ]
    client.insert("events", calls, column_names=EVENT_COLUMNS)
    client.insert("feedback", [feedback("c1", 1, score=5.0), feedback("c4", 0, edited="We open 9 to 5."),
                               feedback("c8", 1), feedback("c7", 1)], column_names=FEEDBACK_COLUMNS)
    save_labels(client, [
        Label("c2", "ana", "accept"),
        Label("c3", "ana", "reject", ("wrong",), edited_output="Order 7 was refunded; call +44 20 7946 0958."),
        Label("c9", "ana", "reject", ("wrong",), edited_output="No, it is up."),
        Label("c10", "ana", "accept"), Label("c10", "bo", "reject", ("wrong",)),
    ])
    client.insert(EVALUATIONS, [[START, "c1", "helpfulness", 0.9, "good", 0], [START, "c3", "helpfulness", 0.2, "bad", 1]],
                  column_names=["ts", "trace_id", "evaluator", "score", "label", "flagged"])
    return client


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_dataset_export_counts_filters_pairs_and_redacts(seeded, tmp_path):
    result = export_dataset(seeded, START, END, tmp_path / "ds", segments=["support-bot"])

    assert result.calls == 10
    assert result.rows == {"regression.jsonl": 7, "sft.jsonl": 2, "preferences.jsonl": 2}
    assert result.removed == {
        "regression.jsonl": {"segment": 1, "failed or empty": 1, "no label": 1},
        "sft.jsonl": {"segment": 1, "failed or empty": 1, "not accepted": 5, "duplicate": 1},
        "preferences.jsonl": {"segment": 1, "failed or empty": 1, "no edit": 6, "duplicate": 0},
    }
    assert result.redacted == 2  # c2's e-mail, c3's phone number in the edit

    regression = {r["trace_id"]: r for r in lines(result.files["regression.jsonl"])}
    assert sorted(regression) == ["c1", "c10", "c2", "c3", "c4", "c8", "c9"]
    assert regression["c2"]["prompt"] == "Mail me at [EMAIL] please"
    assert regression["c1"]["labels"]["user"] == {"accepted": True, "score": 5.0, "comment": "", "edited_output": ""}
    assert regression["c1"]["scores"] == {"helpfulness": {"score": 0.9, "flagged": False}}
    assert [g["verdict"] for g in regression["c10"]["labels"]["reviewers"]] == ["accept", "reject"]
    assert regression["c3"]["labels"]["reviewers"][0]["tags"] == ["wrong"]
    assert (regression["c3"]["service"], regression["c3"]["prompt_version"]) == ("support-bot", "v1")

    sft = lines(result.files["sft.jsonl"])
    assert sft == [
        {"messages": [{"role": "user", "content": "How do I reset my PIN?"},
                      {"role": "assistant", "content": "Open Card settings, then PIN."}]},
        {"messages": [{"role": "user", "content": "Mail me at [EMAIL] please"},
                      {"role": "assistant", "content": "I will send it there."}]},
    ]
    assert lines(result.files["preferences.jsonl"]) == [
        {"prompt": "Refund for order 7?", "chosen": "Order 7 was refunded; call [PHONE].",
         "rejected": "Order 9 was refunded."},
        {"prompt": "Opening hours?", "chosen": "We open 9 to 5.", "rejected": "We never open."},
    ]
    manifest = json.loads(result.files["dataset.json"].read_text(encoding="utf-8"))
    assert manifest["segments"] == [{"service": "support-bot"}] and manifest["rows"] == result.rows
    assert oct(result.files["sft.jsonl"].stat().st_mode & 0o777) == "0o600"


def test_without_a_segment_every_segment_is_exported(seeded, tmp_path):
    result = export_dataset(seeded, START, END, tmp_path / "all")
    assert result.rows == {"regression.jsonl": 8, "sft.jsonl": 3, "preferences.jsonl": 2}
    assert result.removed["regression.jsonl"]["segment"] == 0


def test_the_command_prints_what_each_filter_removed(seeded, tmp_path, store_url, store_database, monkeypatch):
    from llmsight.cli.app import _build

    monkeypatch.setenv("LLMSIGHT_CLICKHOUSE_URL", f"{store_url}?database={store_database}")
    out = tmp_path / "cli"
    done = CliRunner().invoke(_build(), ["dataset", "export", "--from", START.isoformat(), "--to", END.isoformat(),
                                         "--segment", "search/answer", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "sft.jsonl: 1 rows (removed: segment 9, failed or empty 0, not accepted 0, duplicate 0)" in done.output
    assert "regression.jsonl: 1 rows" in done.output
    assert len(lines(out / "sft.jsonl")) == 1


def test_bad_segments_and_ranges_are_refused():
    from llmsight.errors import ConfigError

    assert parse_segment("support-bot/*/model-a") == {"service": "support-bot", "model": "model-a"}
    assert parse_segment("service=a, prompt_version=v2") == {"service": "a", "prompt_version": "v2"}
    with pytest.raises(ConfigError, match="'team' is not one of service, name, model, prompt_version"):
        parse_segment("team=x")
    with pytest.raises(ConfigError, match="at most service/name/model/prompt_version"):
        parse_segment("a/b/c/d/e")
    with pytest.raises(ConfigError, match="must be after"):
        export_dataset(None, END, START, "/nonexistent")
