"""The ``file://`` spool: append-only JSON-lines segment files, one writer process per segment.

This layout is a contract between the SDK (which writes) and the collector (which reads):

* The spool directory holds segment files. The active one is named
  ``{created_unix_ms:013d}-{hostname}-{pid}-{seq:06d}.jsonl.open``; ``base`` is that name
  without ``.jsonl.open``.
* When it reaches ``LLMSIGHT_SPOOL_SEGMENT_BYTES``, or at shutdown, the writer renames it to
  ``{base}.jsonl``: a closed segment, never written again.
* Only the process named in a segment writes to it, so any number of processes can share one
  spool directory. An ``.open`` segment whose pid is dead on this host counts as closed.
* Each line is one event: compact UTF-8 JSON terminated by ``"\\n"``. A crash can leave a torn
  last line without its ``"\\n"``; :func:`read_lines` never yields it.
* ``LLMSIGHT_SPOOL_FSYNC``: ``never``, ``batch`` (after each batch, the default) or ``always``
  (after each event).

The reader side is :func:`list_segments` and :func:`read_lines`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("llmsight")

CLOSED_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".jsonl.open"
_READ_CHUNK = 1 << 20


def hostname() -> str:
    """This host's name, reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname() or "host") or "host"


@dataclass(frozen=True)
class Segment:
    """One segment file: ``path`` as it is now, ``base`` (its name without suffix, stable across
    the rename from ``.open`` to closed) and ``closed`` (no more lines will be appended)."""

    path: Path
    base: str
    closed: bool


def parse_base(base: str) -> tuple[int, str, int, int] | None:
    """(created_unix_ms, hostname, pid, seq) from a segment base, or None if it is not one."""
    head, sep, rest = base.partition("-")
    parts = rest.rsplit("-", 2)
    if not sep or len(parts) != 3 or not (head.isdigit() and parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(head), parts[0], int(parts[1]), int(parts[2])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else
    return True


def list_segments(directory: str | os.PathLike[str]) -> list[Segment]:
    """All segments in ``directory``, oldest first. Missing directory: an empty list."""
    folder = Path(directory).expanduser()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    me = hostname()
    segments = []
    for name in names:
        if name.endswith(OPEN_SUFFIX):
            base, closed = name[: -len(OPEN_SUFFIX)], False
        elif name.endswith(CLOSED_SUFFIX):
            base, closed = name[: -len(CLOSED_SUFFIX)], True
        else:
            continue
        parsed = parse_base(base)
        if parsed is None:
            continue
        if not closed and parsed[1] == me and parsed[2] != os.getpid() and not pid_alive(parsed[2]):
            closed = True  # its writer died: nobody will append to it again
        segments.append(Segment(folder / name, base, closed))
    segments.sort(key=lambda s: s.base)
    return segments


def read_lines(path: str | os.PathLike[str], offset: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(start_offset, end_offset, raw_bytes)`` for each complete line from ``offset`` on.

    ``raw_bytes`` is the line without its ``"\\n"``; ``end_offset`` is just past the ``"\\n"``,
    so reading resumes there. A last line without ``"\\n"`` (still being written, or torn by a
    crash) is not yielded. Empty lines are skipped. Raises FileNotFoundError if the file is gone
    (an ``.open`` segment renamed meanwhile: list the segments again).
    """
    with open(path, "rb") as handle:
        handle.seek(offset)
        position = offset  # file offset of buffer[0]
        buffer = b""
        while True:
            chunk = handle.read(_READ_CHUNK)
            if not chunk:
                return
            buffer = buffer + chunk if buffer else chunk
            start = 0
            while True:
                newline = buffer.find(b"\n", start)
                if newline == -1:
                    break
                if newline > start:
                    yield position + start, position + newline + 1, buffer[start:newline]
                start = newline + 1
            position += start
            buffer = buffer[start:]


def count_lines(path: str | os.PathLike[str], pace: Callable[[], None] | None = None) -> int:
    """Complete lines (events) in a segment file."""
    lines = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
            lines += chunk.count(b"\n")
            if pace is not None:
                pace()
    return lines


def enforce_cap(directory: str | os.PathLike[str], max_bytes: int, *, protect: frozenset[Path] = frozenset(),
                this_host_only: bool = False, pace: Callable[[], None] | None = None) -> tuple[int, list[Path]]:
    """Keep the segments of ``directory`` (every process's) under ``max_bytes`` by deleting the oldest
    closed ones; returns (events dropped, paths deleted).

    Only closed segments are deleted (an ``.open`` one may still be written by a live process), never
    those in ``protect``, and with ``this_host_only`` only this host's (another host's claim on a
    shared disk is its own business). Processes sharing the directory may race to delete the same
    segment: only the one whose ``os.remove`` succeeds counts its events.
    """
    sized: list[tuple[Segment, int]] = []
    total = 0
    for segment in list_segments(directory):
        try:
            size = segment.path.stat().st_size
        except OSError:
            continue
        sized.append((segment, size))
        total += size
    if total <= max_bytes:
        return 0, []
    here = hostname()
    dropped, removed = 0, []
    for segment, size in sized:
        if total <= max_bytes:
            break
        if not segment.closed or segment.path in protect:
            continue
        if this_host_only:
            parsed = parse_base(segment.base)
            if parsed is None or parsed[1] != here:
                continue
        try:
            lines = count_lines(segment.path, pace)
            os.remove(segment.path)
        except FileNotFoundError:  # another process deleted it first
            total -= size
            continue
        except OSError:
            continue
        total -= size
        dropped += lines
        removed.append(segment.path)
    return dropped, removed


class SpoolWriter:
    """Appends batches of encoded lines to this process's active segment and rotates it by size.

    Writes go straight to the file descriptor (no user-space buffer), so a forked child that
    drops the writer cannot replay the parent's buffered bytes. ``on_closed(path, size)`` is
    called after each rename to ``.jsonl``, so an owner can keep its list of segments without
    listing the directory.
    """

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int, fsync: str = "batch",
                 on_closed: Callable[[Path, int], None] | None = None) -> None:
        self.directory = Path(directory).expanduser()
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.on_closed = on_closed
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._seq = 0
        self._pid = os.getpid()

    @property
    def active_path(self) -> Path | None:
        return self._path

    @property
    def active_bytes(self) -> int:
        """Bytes written to the active segment (0 when there is none)."""
        return self._size

    def write(self, lines: Sequence[bytes]) -> None:
        """Append ``lines`` (each ending in ``"\\n"``); raises OSError if the disk refuses."""
        if not lines:
            return
        if self._pid != os.getpid():  # forked: the parent owns the open segment
            self.forget()
        data = b"".join(lines)
        if self._fd is not None and self._size > 0 and self._size + len(data) > self.segment_bytes:
            self.rotate()
        if self._fd is None:
            self._open()
        assert self._fd is not None
        try:
            if self.fsync == "always":
                for line in lines:
                    self._write_all(line)
                    os.fsync(self._fd)
            else:
                self._write_all(data)
                if self.fsync == "batch":
                    os.fsync(self._fd)
        except OSError:
            # A partial write leaves a torn line; close the segment so it stays its last line
            # (which readers skip) instead of being glued to the next event.
            try:
                self.rotate()
            except OSError:
                self._fd, self._path, self._size = None, None, 0
            raise
        self._size += len(data)
        if self._size >= self.segment_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Close the active segment (rename it to ``.jsonl``); the next write opens a new one."""
        fd, path, size = self._fd, self._path, self._size
        self._fd, self._path, self._size = None, None, 0
        if fd is None or path is None:
            return
        try:
            if self.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)
            closed = path.with_name(path.name[: -len(OPEN_SUFFIX)] + CLOSED_SUFFIX)
            os.rename(path, closed)
            if self.on_closed is not None:
                self.on_closed(closed, size)

    def close(self) -> None:
        self.rotate()

    def forget(self) -> None:
        """Drop the segment without renaming it (after a fork: it is the parent's)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._path, self._size, self._seq = None, None, 0, 0
        self._pid = os.getpid()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            self._seq += 1
            base = f"{int(time.time() * 1000):013d}-{hostname()}-{os.getpid()}-{self._seq:06d}"
            path = self.directory / (base + OPEN_SUFFIX)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            self._path, self._size = path, 0
            log.debug("llmsight: spool segment %s opened", path.name)
            return

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
