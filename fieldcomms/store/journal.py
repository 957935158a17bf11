"""The append-only journal: one checksummed JSON line per change, fsynced in groups.

Line format: ``<crc32 of the JSON, 8 hex digits> <JSON of {"seq", "type", "coll", "data", "aux"?}>\\n``.
A line whose checksum does not match, or that lacks its newline, can only be the torn tail of a write
that was never acknowledged (we acknowledge after fsync), so recovery drops it and truncates the file there.

The journal is split into segments named by their first seq; a snapshot at seq S lets every segment
that ends at or before S be deleted.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import StorageError

SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".log"


def encode_record(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record)
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record in a complete journal line, or None when the line is torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        record = orjson.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("seq"), int) else None


def segment_name(first_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{first_seq:012d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        digits = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


@dataclass
class RecoveryReport:
    records: int = 0
    dropped_bytes: int = 0
    segments: list[str] = field(default_factory=list)


def read_segment(path: Path, report: RecoveryReport, *, repair: bool) -> Iterator[dict[str, Any]]:
    """Yield the complete records of one segment; with repair, truncate a torn tail in place."""
    good_end = 0
    with open(path, "rb") as f:
        for line in f:
            record = decode_line(line)
            if record is None:
                break
            good_end += len(line)
            report.records += 1
            yield record
        size = os.fstat(f.fileno()).st_size
    if size > good_end:
        report.dropped_bytes += size - good_end
        if repair:
            with open(path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Rotate:
    def __init__(self, next_seq: int, done: Callable[[], None]) -> None:
        self.next_seq = next_seq
        self.done = done


_STOP = object()


class JournalWriter:
    """One thread owns the segment file. Callers enqueue encoded lines in seq order; the thread writes
    everything queued so far, fsyncs once for the whole group, then reports which tickets are durable.

    Group commit is what keeps 50 concurrent handsets from costing 50 disk flushes.
    """

    def __init__(
        self,
        directory: Path,
        first_seq: int,
        on_durable: Callable[[list[Any], float, BaseException | None], None],
        *,
        fsync: bool = True,
    ) -> None:
        self.directory = directory
        self._fsync = fsync
        self._on_durable = on_durable
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        existing = list_segments(directory)
        path = existing[-1][1] if existing else directory / segment_name(first_seq)
        self._file = open(path, "ab")  # noqa: SIM115 - owned by the writer thread until stop()
        if not existing:
            fsync_dir(directory)
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fieldcomms-journal", daemon=True)
        self._thread.start()

    def submit(self, line: bytes, ticket: Any) -> None:
        if self.failure is not None:
            raise StorageError(f"journal writer failed: {self.failure!r}")
        self._q.put((line, ticket))

    def rotate(self, next_seq: int, done: Callable[[], None]) -> None:
        """Start a new segment at next_seq once everything queued before this call is written."""
        self._q.put(_Rotate(next_seq, done))

    def stop(self) -> None:
        self._q.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._q.get()]
            while True:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            lines: list[bytes] = []
            tickets: list[Any] = []
            try:
                for item in items:
                    if item is _STOP:
                        stopping = True
                    elif isinstance(item, _Rotate):
                        self._flush(lines, tickets)
                        lines, tickets = [], []
                        self._file.close()
                        self._file = open(self.directory / segment_name(item.next_seq), "ab")  # noqa: SIM115
                        fsync_dir(self.directory)
                        item.done()
                    else:
                        lines.append(item[0])
                        tickets.append(item[1])
                self._flush(lines, tickets)
            except BaseException as exc:  # a failed write or fsync: nothing after it may be acknowledged
                self.failure = exc
                while True:
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, tuple):
                        tickets.append(item[1])
                self._on_durable(tickets, 0.0, exc)
                stopping = True
        self._file.close()

    def _flush(self, lines: list[bytes], tickets: list[Any]) -> None:
        if not lines:
            return
        started = time.perf_counter()
        self._file.write(b"".join(lines))
        self._file.flush()
        if self._fsync:
            os.fdatasync(self._file.fileno())
        self._on_durable(tickets, time.perf_counter() - started, None)
