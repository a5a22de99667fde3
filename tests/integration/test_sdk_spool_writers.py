"""Four processes write to one spool directory at once; every event is read back exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from llmsight.spool import list_segments, parse_base, read_lines

WRITER = """
import sys, llmsight
writer = sys.argv[1]
@llmsight.monitor(name="spool-writer")
def ask(q):
    return q.upper()
for i in range(int(sys.argv[2])):
    ask(f"{writer}-{i}")
# no explicit flush: the exit handler must flush and close the segment within its deadline
"""


def test_four_writer_processes_share_one_spool(tmp_path):
    spool = tmp_path / "spool"
    per_writer = 3000
    env = dict(os.environ, LLMSIGHT_SINK=f"file://{spool}", LLMSIGHT_SPOOL_SEGMENT_BYTES=str(256 * 1024),
               LLMSIGHT_FLUSH_INTERVAL_S="0.05", LLMSIGHT_EXIT_TIMEOUT_S="20")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}", str(per_writer)], env=env)
               for n in range(4)]
    pids = {p.pid for p in writers}
    assert [p.wait(timeout=120) for p in writers] == [0, 0, 0, 0]

    segments = list_segments(spool)
    assert all(s.closed and s.path.name.endswith(".jsonl") for s in segments)  # renamed at exit
    assert {parse_base(s.base)[2] for s in segments} == pids
    assert len(segments) > 4  # 256 KB segments: every writer rotated at least once
    inputs: Counter[str] = Counter()
    event_ids = set()
    for segment in segments:
        for _, _, raw in read_lines(segment.path):
            event = json.loads(raw)
            if event["type"] == "heartbeat":  # the loss audit's counters (tests/unit/test_sdk_hardening.py)
                continue
            inputs[event["input"]] += 1
            event_ids.add(event["event_id"])
            assert event["output"] == event["input"].upper()
    expected = {f"w{n}-{i}" for n in range(4) for i in range(per_writer)}
    assert set(inputs) == expected and set(inputs.values()) == {1}
    assert len(event_ids) == 4 * per_writer
