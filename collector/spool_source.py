"""The spool source: tails the SDK's ``file://`` spool segments (format in ``llmsight.spool``).

Where it has got to lives in ``<spool>/.collector/positions.json``: per segment, the byte offset
and line number up to which every line is stored. The file is replaced atomically (tmp file,
fsync, ``os.replace``) after each insert, so a crash replays at most the batch in flight; the
batch reuses its dedup token ``segment-startoffset-endoffset`` and ClickHouse drops it.

A closed segment (or an ``.open`` one whose writer died) that is stored to its last byte is
deleted. Its torn last line, if any, goes to dead_letters first. One collector per spool
directory: a second one fails fast on ``.collector/lock``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from llmsight.collector.batch import Chunk
from llmsight.collector.source import Checkpoint, Source, make_token
from llmsight.errors import SinkError
from llmsight.spool import Segment, list_segments, read_lines

log = logging.getLogger("llmsight.collector")

STATE_DIR = ".collector"
POSITIONS_FILE = "positions.json"
_TAIL_INTERVAL_S = 0.05  # how often an idle poll looks for new lines


class SpoolSource(Source):
    """Reads every segment of ``directory`` in order, and records positions after each insert."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.url = f"file://{self.directory}"
        self._state_dir = self.directory / STATE_DIR
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self._state_dir / "lock", "a+")  # noqa: SIM115 - held for the source's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SinkError(f"collector: another collector is reading the spool {self.directory} "
                            "(one collector per spool directory)") from None
        # base -> [offset, line]: committed (stored) and read (polled, maybe not stored yet)
        try:
            self._committed: dict[str, list[int]] = self._load_positions()
        except SinkError:
            self.close()
            raise
        self._read: dict[str, list[int]] = {k: list(v) for k, v in self._committed.items()}
        self._ranges: dict[str, list[int]] = {}  # base -> [start, end] since the last checkpoint
        self._sizes: dict[str, int] = {}
        self._last_read_empty = False

    # -- reading ----------------------------------------------------------------------------------
    def poll(self, timeout_s: float, max_messages: int, max_bytes: int) -> list[Chunk]:
        deadline = time.monotonic() + timeout_s
        while True:
            chunks = self._read_some(max_messages, max_bytes)
            remaining = deadline - time.monotonic()
            if chunks or remaining <= 0:
                return chunks
            time.sleep(min(_TAIL_INTERVAL_S, remaining))

    def _read_some(self, max_messages: int, max_bytes: int) -> list[Chunk]:
        chunks: list[Chunk] = []
        budget_messages, budget_bytes = max_messages, max_bytes
        segments = list_segments(self.directory)
        self._sizes = {}
        for segment in segments:
            if budget_messages <= 0 or budget_bytes <= 0:
                break
            try:
                size = segment.path.stat().st_size
            except FileNotFoundError:  # renamed from .open to closed meanwhile: next round
                continue
            self._sizes[segment.base] = size
            position = self._read.setdefault(segment.base, [0, 0])
            if position[0] >= size:
                continue
            chunk = self._read_segment(segment, position, budget_messages, budget_bytes)
            if chunk is None:
                continue
            chunks.append(chunk)
            budget_messages -= len(chunk.values)
            budget_bytes -= sum(len(v or b"") for v in chunk.values)
        self._last_read_empty = not chunks
        return chunks

    def _read_segment(self, segment: Segment, position: list[int], max_messages: int,
                      max_bytes: int) -> Chunk | None:
        offset, line = position
        first = offset
        lines: list[int] = []
        values: list[bytes | None] = []
        nbytes = 0
        try:
            for start, end, raw in read_lines(segment.path, offset):
                line += start - offset + 1  # read_lines skips empty lines: one "\n" byte each
                offset = end
                lines.append(line)
                values.append(raw)
                nbytes += len(raw)
                if len(values) >= max_messages or nbytes >= max_bytes:
                    break
        except FileNotFoundError:
            pass  # renamed while we read: what we got is valid, the rest comes next round
        prefix = f"file://{segment.path}:"
        if not values and segment.closed:
            torn = self._torn_tail(segment, offset)
            if torn is None:
                return None
            line += 1
            lines, values, offset = [line], [torn], offset + len(torn)
            self._advance(segment.base, position, first, offset, line)
            reason = (f"torn line: {len(torn)} bytes without a final newline at the end of a closed "
                      "segment (its writer stopped mid-line)")
            return Chunk(prefix, lines, values, broken=reason)
        if not values:
            return None
        self._advance(segment.base, position, first, offset, line)
        return Chunk(prefix, lines, values)

    def _torn_tail(self, segment: Segment, offset: int) -> bytes | None:
        try:
            with open(segment.path, "rb") as handle:
                handle.seek(offset)
                tail = handle.read()
        except FileNotFoundError:
            return None
        # Only newlines left (empty lines) are not a torn line.
        return tail if tail.strip(b"\n") else None

    def _advance(self, base: str, position: list[int], first: int, offset: int, line: int) -> None:
        position[0], position[1] = offset, line
        span = self._ranges.get(base)
        if span is None:
            self._ranges[base] = [first, offset]
        else:
            span[1] = offset

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint | None:
        if not self._ranges:
            return None
        ranges = [f"{base}-{start}-{end}" for base, (start, end) in self._ranges.items()]
        state = {base: list(self._read[base]) for base in self._ranges}
        self._ranges = {}
        return Checkpoint(make_token(ranges), state, ranges)

    def commit(self, checkpoint: Checkpoint) -> None:
        for base, position in checkpoint.state.items():
            self._committed[base] = list(position)
        self._save_positions()
        self._delete_consumed()

    def rewind(self) -> None:
        self._read = {k: list(v) for k, v in self._committed.items()}
        self._ranges = {}

    def idle(self) -> bool:
        return self._last_read_empty and not self._ranges

    def lag(self) -> int | None:
        return sum(max(0, size - self._read.get(base, [0])[0]) for base, size in self._sizes.items())

    def close(self) -> None:
        try:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        finally:
            self._lock.close()

    # -- positions file ---------------------------------------------------------------------------
    def _load_positions(self) -> dict[str, list[int]]:
        path = self._state_dir / POSITIONS_FILE
        try:
            data: Any = json.loads(path.read_bytes())
            return {str(k): [int(v[0]), int(v[1])] for k, v in data["segments"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise SinkError(f"collector: {path} is damaged ({exc}); move it away to re-read the spool "
                            "from the start (dedup removes what was stored already)") from None

    def _save_positions(self) -> None:
        path = self._state_dir / POSITIONS_FILE
        tmp = path.with_suffix(".tmp")
        data = json.dumps({"version": 1, "segments": self._committed}, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self._state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def _delete_consumed(self) -> None:
        present = set()
        for segment in list_segments(self.directory):
            present.add(segment.base)
            if not segment.closed:
                continue
            committed = self._committed.get(segment.base)
            try:
                size = segment.path.stat().st_size
            except FileNotFoundError:
                continue
            if committed is not None and committed[0] >= size:
                segment.path.unlink(missing_ok=True)
                present.discard(segment.base)
                log.info("collector: spool segment %s stored and removed", segment.path.name)
        # Forget segments whose files are gone (deleted now or before a crash).
        for base in [b for b in self._committed if b not in present]:
            del self._committed[base]
            self._read.pop(base, None)
            self._sizes.pop(base, None)
