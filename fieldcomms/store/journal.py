"""The append-only journal: one checksummed, chained JSON line per change, fsynced in groups.

Line format: ``<crc32, 8 hex> <chain hash, 64 hex> <canonical JSON of the record>\\n`` where the record is
``{"seq", "type", "coll", "data", "aux"?}`` (see `chain.py` for the canonical form and the chain hash), and
the CRC covers everything between the first space and the newline. A purge leaves a redacted line, whose
record also carries ``"redacted": true`` and ``"digest"`` (the hex record digest of the original); its chain
hash is unchanged.

Recovery: a line whose checksum does not match, or that lacks its newline, is a torn write only when it is
at the end of the newest segment with no readable line after it (we acknowledge after fsync, so a crash can
only tear what was never acknowledged): that tail is dropped. Anywhere else it is damage, and dropping it
would lose acknowledged changes, so reading stops with `JournalCorrupt` naming the segment and line.

The journal is split into segments named by their first seq. Snapshots no longer delete them: history is
kept (closed segments gzip-compressed, ``.log.gz``) until a purge rewrites it.
"""

from __future__ import annotations

import gzip
import os
import queue
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import JournalCorrupt, StorageError
from .chain import GENESIS, link, record_digest

SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".log"
COMPRESSED_SUFFIX = ".log.gz"
HASH_HEX = 64
_MIN_LINE = 9 + HASH_HEX + 1 + 2 + 1  # "crc " + hash + " " + "{}" + "\n"


def encode_change(record: dict[str, Any], previous: bytes) -> tuple[bytes, bytes]:
    """(the journal line, the change's chain hash). Raises orjson.JSONEncodeError for an unencodable record."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    chain = link(previous, record_digest(body))
    rest = chain.hex().encode() + b" " + body
    return b"%08x " % zlib.crc32(rest) + rest + b"\n", chain


def encode_record(record: dict[str, Any], previous: bytes = GENESIS) -> bytes:
    return encode_change(record, previous)[0]


def encode_line(body: bytes, chain: bytes) -> bytes:
    """A line for an already-serialised body and a known chain hash (a redacted line keeps its hash)."""
    rest = chain.hex().encode() + b" " + body
    return b"%08x " % zlib.crc32(rest) + rest + b"\n"


@dataclass(slots=True)
class Line:
    record: dict[str, Any]
    body: bytes  # the record's bytes as stored: its canonical form, unless the line was redacted
    chain: bytes

    def digest(self) -> bytes:
        """The record digest the chain covers: computed, or for a redacted line, the original's, stored."""
        stored = self.record.get("digest") if self.record.get("redacted") is True else None
        if isinstance(stored, str):
            try:
                return bytes.fromhex(stored)
            except ValueError:
                return b""
        return record_digest(self.body)


def parse_line(line: bytes) -> Line | None:
    """The parts of a complete journal line, or None when the line is torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < _MIN_LINE or line[8:9] != b" " or line[9 + HASH_HEX] != 0x20:
        return None
    rest = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(rest):
            return None
        chain = bytes.fromhex(rest[:HASH_HEX].decode("ascii"))
        body = rest[HASH_HEX + 1:]
        record = orjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
        return None
    return Line(record, body, chain)


def is_legacy_line(line: bytes) -> bool:
    """A whole line of the format before the chain (``<crc32> <json>``): not damage, and never to be dropped."""
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" " or line[9:10] != b"{":
        return False
    try:
        return int(line[:8], 16) == zlib.crc32(line[9:-1])
    except ValueError:
        return False


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record in a complete journal line, or None when the line is torn or corrupt."""
    parsed = parse_line(line)
    return None if parsed is None else parsed.record


def segment_name(first_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{first_seq:012d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment, plain or compressed, oldest first. Where a crash during
    compression left both forms of one segment, the plain one is listed (the next compression redoes it)."""
    found: dict[int, Path] = {}
    for path in directory.glob(f"{SEGMENT_PREFIX}*"):
        name = path.name
        if name.endswith(COMPRESSED_SUFFIX):
            digits = name[len(SEGMENT_PREFIX):-len(COMPRESSED_SUFFIX)]
        elif name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
        else:
            continue
        if digits.isdigit():
            first = int(digits)
            if first not in found or name.endswith(SEGMENT_SUFFIX):
                found[first] = path
    return sorted(found.items())


def is_compressed(path: Path) -> bool:
    return path.name.endswith(COMPRESSED_SUFFIX)


def open_segment(path: Path) -> IO[bytes]:
    if is_compressed(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile is a binary file
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


@dataclass
class RecoveryReport:
    records: int = 0
    dropped_bytes: int = 0
    segments: list[str] = field(default_factory=list)


def _rest_is_unreadable(lines: IO[bytes]) -> tuple[bool, int]:
    """(whether no readable line follows, the bytes read): only then is a bad line a torn tail."""
    size = 0
    for raw in lines:
        if parse_line(raw) is not None:
            return False, size
        size += len(raw)
    return True, size


def read_lines(path: Path, report: RecoveryReport, *, repair: bool, last: bool = True) -> Iterator[Line]:
    """Yield the lines of one segment. A torn tail (see the module docstring) is dropped, and with `repair`
    truncated in place; any other unreadable line raises `JournalCorrupt`."""
    good_end = 0
    torn = 0
    with open_segment(path) as f:
        for n, raw in enumerate(f, start=1):
            line = parse_line(raw)
            if line is None:
                if is_legacy_line(raw):
                    raise StorageError(
                        f"{path.name}: line {n} is in the journal format from before the tamper-evident chain; "
                        "this version cannot continue that history. Start from a new data directory.")
                unreadable, rest = _rest_is_unreadable(f)
                if not last or not unreadable:
                    raise JournalCorrupt(path.name, n, good_end)
                torn = len(raw) + rest
                break
            good_end += len(raw)
            report.records += 1
            yield line
    if torn:
        report.dropped_bytes += torn
        if repair:
            if is_compressed(path):  # only the newest segment can be torn, and it is never compressed
                raise JournalCorrupt(path.name, 0, good_end)
            with open(path, "r+b") as out:
                out.truncate(good_end)
                out.flush()
                os.fsync(out.fileno())


def read_segment(path: Path, report: RecoveryReport, *, repair: bool, last: bool = True) -> Iterator[dict[str, Any]]:
    """The records of one segment (see `read_lines`)."""
    return (line.record for line in read_lines(path, report, repair=repair, last=last))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[IO[bytes]], None], *, compress: bool = False) -> None:
    """Write a new file beside `path`, fsync it and rename it over `path`: readers see the old or the new
    file whole, and after the directory fsync the old bytes are in no file of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        if compress:
            # Level 1: a segment of 200,000 changes compresses in about a second on a background thread and
            # JSON lines still shrink about fivefold.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz:
                write(gz)  # type: ignore[arg-type]
        else:
            write(raw)
        raw.flush()
        os.fsync(raw.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def compress_segment(path: Path) -> Path:
    """Replace a closed plain segment by its gzip form; the plain file goes once the compressed one is durable."""
    target = path.with_name(path.name[:-len(SEGMENT_SUFFIX)] + COMPRESSED_SUFFIX)

    def copy(out: IO[bytes]) -> None:
        with open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    write_atomically(target, copy, compress=True)
    path.unlink()
    fsync_dir(path.parent)
    return target


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
        if existing and not is_compressed(existing[-1][1]):
            path = existing[-1][1]
        else:
            path = directory / segment_name(first_seq)
        self.path = path
        self._file = self._open(path)
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fieldcomms-journal", daemon=True)
        self._thread.start()

    def _open(self, path: Path) -> IO[bytes]:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "ab")
        fsync_dir(self.directory)  # a new segment's name must survive a crash as well as its lines
        return f

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
                        self.path = self.directory / segment_name(item.next_seq)
                        self._file = self._open(self.path)
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
