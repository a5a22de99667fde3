"""The spool source on real files: positions, line numbers, torn lines, removal of consumed segments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmsight.collector.spool_source import SpoolSource
from llmsight.errors import SinkError
from llmsight.spool import hostname

DEAD_PID = 2**22 + 12345  # above the default pid_max, so no process has it


def segment(spool: Path, seq: int, content: bytes, *, closed: bool = True, pid: int = DEAD_PID) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{1_700_000_000_000 + seq:013d}-{hostname()}-{pid}-{seq:06d}.jsonl" + ("" if closed else ".open")
    path = spool / name
    path.write_bytes(content)
    return path


def read_all(source: SpoolSource) -> list[tuple[str, int, bytes, str | None]]:
    out = []
    for chunk in source.poll(0, 10_000, 1 << 20):
        for line, raw in zip(chunk.positions, chunk.values, strict=True):
            out.append((chunk.prefix, line, raw, chunk.broken))
    return out


def test_lines_come_with_their_line_numbers_and_positions_survive_a_restart(tmp_path: Path) -> None:
    path = segment(tmp_path, 1, b'{"a":1}\n\n{"a":2}\n', closed=False, pid=os.getpid())
    source = SpoolSource(tmp_path)
    assert read_all(source) == [(f"file://{path}:", 1, b'{"a":1}', None), (f"file://{path}:", 3, b'{"a":2}', None)]
    checkpoint = source.checkpoint()
    assert checkpoint is not None and checkpoint.token == f"{path.name[:-len('.jsonl.open')]}-0-17"
    source.commit(checkpoint)
    source.close()
    with open(path, "ab") as handle:
        handle.write(b'{"a":3}\n{"a":')  # a line still being written stays unread
    again = SpoolSource(tmp_path)
    assert read_all(again) == [(f"file://{path}:", 4, b'{"a":3}', None)]
    assert path.exists()  # open and its writer (this process) alive: never removed
    again.close()


def test_uncommitted_lines_are_read_again_after_rewind_or_crash(tmp_path: Path) -> None:
    segment(tmp_path, 1, b"1\n2\n")
    source = SpoolSource(tmp_path)
    assert [r[2] for r in read_all(source)] == [b"1", b"2"]
    source.rewind()
    assert [r[2] for r in read_all(source)] == [b"1", b"2"]
    source.close()  # no commit: a new source starts over
    fresh = SpoolSource(tmp_path)
    assert [r[2] for r in read_all(fresh)] == [b"1", b"2"]
    fresh.close()


def test_a_torn_last_line_of_a_closed_or_orphaned_segment_is_handed_over_as_broken(tmp_path: Path) -> None:
    closed = segment(tmp_path, 1, b'{"ok":1}\n{"torn')
    orphan = segment(tmp_path, 2, b'{"ok":2}\n{"half', closed=False)  # writer pid is dead
    source = SpoolSource(tmp_path)
    rows = read_all(source)
    assert rows[0] == (f"file://{closed}:", 1, b'{"ok":1}', None)
    assert rows[1] == (f"file://{orphan}:", 1, b'{"ok":2}', None)
    rows += read_all(source)  # the tails come once the complete lines are read
    assert [(r[1], r[2]) for r in rows[2:]] == [(2, b'{"torn'), (2, b'{"half')]
    assert all(r[3] and r[3].startswith("torn line: ") for r in rows[2:])
    checkpoint = source.checkpoint()
    assert checkpoint is not None
    source.commit(checkpoint)
    assert not closed.exists() and not orphan.exists()  # fully stored: removed
    assert read_all(source) == [] and source.idle()
    positions = json.loads((tmp_path / ".collector" / "positions.json").read_text())
    assert positions["version"] == 1
    source.close()


def test_a_consumed_segment_is_removed_only_after_the_commit(tmp_path: Path) -> None:
    path = segment(tmp_path, 1, b"1\n")
    source = SpoolSource(tmp_path)
    read_all(source)
    checkpoint = source.checkpoint()
    assert path.exists()
    assert checkpoint is not None
    source.commit(checkpoint)
    assert not path.exists()
    source.close()


def test_segments_are_read_oldest_first_within_the_message_budget(tmp_path: Path) -> None:
    segment(tmp_path, 2, b"c\nd\n")
    segment(tmp_path, 1, b"a\nb\n")
    source = SpoolSource(tmp_path)
    first = source.poll(0, 3, 1 << 20)
    assert [v for c in first for v in c.values] == [b"a", b"b", b"c"]
    checkpoint = source.checkpoint()
    assert checkpoint is not None and len(checkpoint.ranges) == 2
    assert [v for c in source.poll(0, 3, 1 << 20) for v in c.values] == [b"d"]
    source.close()


def test_a_second_collector_on_the_same_spool_fails_fast(tmp_path: Path) -> None:
    first = SpoolSource(tmp_path)
    try:
        with pytest.raises(SinkError, match="another collector is reading the spool"):
            SpoolSource(tmp_path)
    finally:
        first.close()


def test_a_damaged_positions_file_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / ".collector").mkdir()
    (tmp_path / ".collector" / "positions.json").write_text("{nope")
    with pytest.raises(SinkError, match="positions.json is damaged"):
        SpoolSource(tmp_path)
