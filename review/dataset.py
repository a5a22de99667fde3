"""``llmsight dataset export``: datasets from production calls, for regression tests and fine-tuning.

:func:`export_dataset` reads the calls in ``[start, end)`` (optionally of some segments), with their
users' latest feedback and their reviewers' latest labels, and writes three JSON Lines files:

* ``regression.jsonl``: every labelled call (a user's verdict, score or edit, or a reviewer's label):
  ``prompt``, ``output``, ``labels`` (the user's verdict, score, comment and edit; each reviewer's
  verdict, tags, edit and comment) and ``scores`` (each evaluator's score, when the online evaluators
  wrote any), with the call's trace id, time and segment;
* ``sft.jsonl``: the accepted answers as chat examples, ``{"messages": [user, assistant]}``. A call is
  accepted when more than half of its reviewers accepted it (a tie is not: the review queue's scores
  count a tie as bad too) or, with no reviewer, its user accepted it;
* ``preferences.jsonl``: one pair per edited answer, ``{"prompt", "chosen": edited, "rejected": original}``;
  a reviewer's edit wins over the user's, the latest reviewer's over an earlier one.

Every text goes through :func:`llmsight.redact.redact` (e-mail addresses, phone and card numbers, keys...)
before it is written. :class:`DatasetResult` counts, for each file, the rows each filter removed:
calls outside the segments, calls that failed or have no output, calls with no label, calls not
accepted, calls with no edit (or an edit equal to the answer), and exact duplicates (same prompt and
answer); and how many rows had text redacted. Files are 0600 in a 0700 folder, like the weekly export.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llmsight.errors import ConfigError
from llmsight.review.export import private_dir, private_file
from llmsight.review.labels import EVALUATIONS, TABLE, has_table
from llmsight.store.names import SEGMENT_KEYS
from llmsight.store.times import between, iso_ms, sql_time

log = logging.getLogger("llmsight.review.dataset")

FILES = ("regression.jsonl", "sft.jsonl", "preferences.jsonl")
MANIFEST = "dataset.json"


def parse_segment(text: str) -> dict[str, str]:
    """``service/name/model/prompt_version`` (trailing parts may be left out; ``*`` or empty matches any) or
    ``key=value,key=value`` with keys from the segment keys."""
    text = text.strip()
    if not text:
        raise ConfigError("an empty --segment: give service/name/model/prompt_version or service=...,name=...")
    if "=" in text:
        out = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in SEGMENT_KEYS:
                raise ConfigError(f"--segment {text!r}: {key!r} is not one of {', '.join(SEGMENT_KEYS)}")
            out[key] = value.strip()
        return out
    parts = text.split("/")
    if len(parts) > len(SEGMENT_KEYS):
        raise ConfigError(f"--segment {text!r} has {len(parts)} parts; at most service/name/model/prompt_version")
    return {key: value for key, value in zip(SEGMENT_KEYS, parts, strict=False) if value not in ("", "*")}


@dataclass
class DatasetResult:
    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # file -> rows written
    calls: int = 0  # calls in the time range
    removed: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> filter -> rows removed
    redacted: int = 0  # calls whose prompt, output or an edit had something redacted

    def lines(self) -> list[str]:
        out = [f"{self.calls:,} calls in the range; texts redacted in {self.redacted:,} of the rows written"]
        for name in FILES:
            removed = ", ".join(f"{k} {v:,}" for k, v in self.removed.get(name, {}).items())
            out.append(f"{name}: {self.rows.get(name, 0):,} rows" + (f" (removed: {removed})" if removed else ""))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "calls": self.calls, "rows": self.rows, "removed": self.removed,
                "redacted": self.redacted}


_CALLS = f"""
SELECT e.trace_id, e.ts, {", ".join("e." + k for k in SEGMENT_KEYS)}, e.input, e.output, e.error,
       f.verdict, f.last_score, f.last_comment, f.last_edit
FROM (SELECT * FROM events FINAL WHERE {between("ts")}) AS e
LEFT JOIN (
    SELECT trace_id, argMax(accepted, ts) AS verdict, argMax(score, ts) AS last_score,
           argMax(comment, ts) AS last_comment, argMax(edited_output, ts) AS last_edit
    FROM feedback FINAL GROUP BY trace_id
) AS f ON f.trace_id = e.trace_id
ORDER BY e.ts, e.event_id
"""


def _reviews(client: Any, traces: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = client.query(
        f"SELECT trace_id, reviewer, argMax(verdict, labelled_at), argMax(tags, labelled_at), "
        f"argMax(edited_output, labelled_at), argMax(comment, labelled_at), max(labelled_at) FROM {TABLE} "
        "WHERE has({t:Array(String)}, trace_id) GROUP BY trace_id, reviewer ORDER BY trace_id, max(labelled_at), reviewer",
        parameters={"t": traces}).result_rows
    out: dict[str, list[dict[str, Any]]] = {}
    for trace, reviewer, verdict, tags, edited, comment, at in rows:
        out.setdefault(trace, []).append({"reviewer": reviewer, "verdict": verdict, "tags": list(tags),
                                          "edited_output": edited, "comment": comment, "labelled_at": iso_ms(at)})
    return out


def _scores(client: Any, traces: list[str]) -> dict[str, dict[str, Any]]:
    if not traces or not has_table(client, EVALUATIONS):
        return {}
    rows = client.query(f"SELECT trace_id, evaluator, avg(score), max(flagged) FROM {EVALUATIONS} "
                        "WHERE has({t:Array(String)}, trace_id) GROUP BY trace_id, evaluator ORDER BY trace_id, evaluator",
                        parameters={"t": traces}).result_rows
    out: dict[str, dict[str, Any]] = {}
    for trace, evaluator, value, flagged in rows:
        out.setdefault(trace, {})[str(evaluator)] = {
            "score": None if value is None else round(float(value), 6), "flagged": bool(flagged)}
    return out


def _matches(segment: dict[str, str], filters: list[dict[str, str]]) -> bool:
    return not filters or any(all(segment[k] == v for k, v in f.items()) for f in filters)


def _write(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with private_file(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
            count += 1
    return count


def export_dataset(client: Any, start: datetime, end: datetime, out_dir: str | Path, *,
                   segments: Iterable[str | dict[str, str]] = ()) -> DatasetResult:
    """Write the datasets of the calls in ``[start, end)`` to ``out_dir`` (see the module docstring)."""
    from llmsight.redact import redact

    if end <= start:
        raise ConfigError(f"--to ({iso_ms(end)}) must be after --from ({iso_ms(start)})")
    filters = [parse_segment(s) if isinstance(s, str) else dict(s) for s in segments]
    directory = private_dir(Path(out_dir).expanduser())
    result = DatasetResult(directory)
    calls = client.query(_CALLS, parameters={"start": sql_time(start), "end": sql_time(end)},
                         settings={"join_use_nulls": 1}).result_rows
    result.calls = len(calls)
    removed = {"regression.jsonl": {"segment": 0, "failed or empty": 0, "no label": 0},
               "sft.jsonl": {"segment": 0, "failed or empty": 0, "not accepted": 0, "duplicate": 0},
               "preferences.jsonl": {"segment": 0, "failed or empty": 0, "no edit": 0, "duplicate": 0}}
    kept = []
    for trace, ts, *rest in calls:
        segment = dict(zip(SEGMENT_KEYS, rest[:4], strict=True))
        text_in, text_out, error, verdict, score, comment, edit = rest[4:]
        reason = None if _matches(segment, filters) else "segment"
        if reason is None and (error or not str(text_out).strip()):
            reason = "failed or empty"
        if reason:
            for name in FILES:
                removed[name][reason] += 1
            continue
        kept.append((trace, ts, segment, text_in, text_out, verdict, score, comment, edit or ""))
    traces = sorted({row[0] for row in kept})
    reviews = _reviews(client, traces) if traces else {}
    scores = _scores(client, traces)

    regression: list[dict[str, Any]] = []
    sft: list[dict[str, Any]] = []
    preferences: list[dict[str, Any]] = []
    seen_sft: set[tuple[str, str]] = set()
    seen_pairs: set[tuple[str, str, str]] = set()
    redacted: set[str] = set()
    written: set[str] = set()

    def clean(trace: str, text: str) -> str:
        out = str(redact(text))
        if out != text:
            redacted.add(trace)
        return out

    for trace, ts, segment, text_in, text_out, verdict, score, comment, user_edit in kept:
        given = reviews.get(trace, [])
        labelled = bool(given) or verdict is not None or score is not None or bool(user_edit)
        prompt, output = clean(trace, text_in), clean(trace, text_out)
        if labelled:
            written.add(trace)
            regression.append({
                "trace_id": trace, "ts": iso_ms(ts), **segment, "prompt": prompt, "output": output,
                "labels": {"user": {"accepted": None if verdict is None else bool(verdict), "score": score,
                                    "comment": clean(trace, comment or ""), "edited_output": clean(trace, user_edit)},
                           "reviewers": [{**g, "edited_output": clean(trace, g["edited_output"]),
                                          "comment": clean(trace, g["comment"])} for g in given]},
                "scores": scores.get(trace, {}),
            })
        else:
            removed["regression.jsonl"]["no label"] += 1
        if given:
            accepted = sum(g["verdict"] == "accept" for g in given) * 2 > len(given)
        else:
            accepted = verdict is not None and bool(verdict)
        if not accepted:
            removed["sft.jsonl"]["not accepted"] += 1
        elif (prompt, output) in seen_sft:
            removed["sft.jsonl"]["duplicate"] += 1
        else:
            seen_sft.add((prompt, output))
            written.add(trace)
            sft.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]})
        edits = [g["edited_output"] for g in given if g["edited_output"].strip()]
        edit = edits[-1] if edits else user_edit  # reviewers' edits by time: the latest wins
        chosen = clean(trace, edit) if edit.strip() else ""
        if not chosen or chosen.strip() == output.strip():
            removed["preferences.jsonl"]["no edit"] += 1
        elif (prompt, chosen, output) in seen_pairs:
            removed["preferences.jsonl"]["duplicate"] += 1
        else:
            seen_pairs.add((prompt, chosen, output))
            written.add(trace)
            preferences.append({"prompt": prompt, "chosen": chosen, "rejected": output})
    for name, rows in zip(FILES, (regression, sft, preferences), strict=True):
        path = directory / name
        result.rows[name] = _write(path, rows)
        result.files[name] = path
    result.removed = removed
    result.redacted = len(redacted & written)
    manifest = private_file(directory / MANIFEST)
    manifest.write_text(json.dumps({"from": iso_ms(start), "to": iso_ms(end), "segments": filters,
                                    **result.as_dict()}, indent=2) + "\n", encoding="utf-8")
    result.files[MANIFEST] = manifest
    log.info("dataset: %s", "; ".join(result.lines()))
    return result
