"""The spool format (the contract with the collector): names, rotation, fsync policy, the reader."""

from __future__ import annotations

import os
import socket

import pytest

from llmsight import spool
from llmsight.spool import SpoolWriter, hostname, list_segments, parse_base, read_lines


def lines(n, start=0, width=40):
    return [f'{{"n":{i},"pad":"{"x" * width}"}}\n'.encode() for i in range(start, start + n)]


def test_segment_names_rotation_and_close(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=200, fsync="never")
    for i in range(5):
        writer.write(lines(2, start=2 * i))  # 2 x ~58 bytes: a segment holds two batches at most
    segments = list_segments(tmp_path)
    assert [s.closed for s in segments[:-1]] == [True] * (len(segments) - 1)
    assert not segments[-1].closed and segments[-1].path.name.endswith(".jsonl.open")
    for seq, segment in enumerate(segments, start=1):
        created, host, pid, number = parse_base(segment.base)
        assert (host, pid, number) == (hostname(), os.getpid(), seq)
        assert len(segment.base.split("-")[0]) == 13 and created > 1_600_000_000_000
        assert segment.path.name == f"{created:013d}-{host}-{pid}-{number:06d}" + (
            ".jsonl" if segment.closed else ".jsonl.open")
    writer.close()
    segments = list_segments(tmp_path)
    assert all(s.closed for s in segments)
    got = [raw for s in segments for _, _, raw in read_lines(s.path)]
    assert got == [line[:-1] for line in lines(10)]


def test_read_lines_skips_a_torn_last_line_and_resumes_by_offset(tmp_path):
    path = tmp_path / "seg.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"b":2}\n{"c":')
    first = list(read_lines(path))
    assert first == [(0, 8, b'{"a":1}'), (9, 17, b'{"b":2}')]
    with open(path, "ab") as handle:
        handle.write(b"3}\n")
    assert list(read_lines(path, first[-1][1])) == [(17, 25, b'{"c":3}')]
    assert list(read_lines(path, 25)) == []


def test_read_lines_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(spool, "_READ_CHUNK", 7)
    path = tmp_path / "seg.jsonl"
    payload = lines(20, width=5)
    path.write_bytes(b"".join(payload))
    got = list(read_lines(path))
    assert [raw + b"\n" for _, _, raw in got] == payload
    assert got[-1][1] == path.stat().st_size


def test_open_segment_of_a_dead_local_process_counts_as_closed(tmp_path):
    dead_pid = 4_000_000  # above any pid_max in use here: no such process
    assert not spool.pid_alive(dead_pid)
    (tmp_path / f"{1:013d}-{hostname()}-{dead_pid}-000001.jsonl.open").write_bytes(b"")
    (tmp_path / f"{2:013d}-other.host-{dead_pid}-000001.jsonl.open").write_bytes(b"")
    (tmp_path / f"{3:013d}-{hostname()}-{os.getpid()}-000001.jsonl.open").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    segments = list_segments(tmp_path)
    assert [(s.base.split("-")[0], s.closed) for s in segments] == [
        ("0000000000001", True),  # dead writer on this host
        ("0000000000002", False),  # another host: we cannot tell, so it stays open
        ("0000000000003", False),  # our own, alive
    ]


def test_hostname_with_dashes_parses(tmp_path):
    assert parse_base("0001700000000000-web-1.prod-42-000007") == (1700000000000, "web-1.prod", 42, 7)
    assert parse_base("garbage") is None
    assert "/" not in hostname() and socket.gethostname()


@pytest.mark.parametrize(("policy", "expected_syncs"), [("never", 0), ("batch", 2), ("always", 6)])
def test_fsync_policy(tmp_path, monkeypatch, policy, expected_syncs):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    writer = SpoolWriter(tmp_path, segment_bytes=1 << 20, fsync=policy)
    writer.write(lines(3))
    writer.write(lines(3))
    assert len(calls) == expected_syncs
    writer.forget()


def test_missing_directory_lists_nothing(tmp_path):
    assert list_segments(tmp_path / "absent") == []
