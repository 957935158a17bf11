"""`fieldcomms salvage`: keep what can be kept of a damaged journal, after copying the damage aside.

A corrupt line that is not the torn tail (readable changes follow it) stops the server from starting,
because dropping it, as recovery once did, would lose acknowledged changes without a word. This command is
the deliberate way on, run by a person on a stopped server:

1. every damaged segment is copied, unchanged, to ``<data dir>/damaged/<segment>.<UTC time>`` (fsynced);
2. the segment is rewritten with its readable lines only (new file, fsync, rename);
3. the seqs that were in the unreadable lines (those between the last readable change before the damage and
   the first after it) are recorded in ``<data dir>/salvage.json``, so the store starts across that gap and
   `fieldcomms check` reports it as a note: those changes are lost, and the chain's link across the gap
   cannot be verified. Only gaps made by this command are accepted; any other gap is still an error.
"""

from __future__ import annotations

import os
import shutil
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from .journal import fsync_dir, is_compressed, list_segments, open_segment, parse_line, write_atomically

SALVAGE = "salvage.json"
DAMAGED_DIR = "damaged"


def lost_ranges(data_dir: Path) -> list[tuple[int, int]]:
    """[(first, last)] seq ranges that `salvage` recorded as lost."""
    path = data_dir / SALVAGE
    if not path.exists():
        return []
    try:
        return [(int(a), int(b)) for a, b in orjson.loads(path.read_bytes()).get("lost", [])]
    except (ValueError, TypeError, AttributeError):
        return []


class LostSeqs:
    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges

    def covers(self, first: int, last: int) -> bool:
        """Whether every seq in first..last was recorded as lost."""
        return any(a <= first and last <= b for a, b in self.ranges)

    def __contains__(self, seq: int) -> bool:
        return self.covers(seq, seq)


def lost_seqs(data_dir: Path) -> LostSeqs:
    return LostSeqs(lost_ranges(data_dir))


@dataclass
class SalvageReport:
    copies: list[str] = field(default_factory=list)
    kept: int = 0
    dropped_lines: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


_BAD = -1


def _scan(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(seq, raw line) of each readable line and (_BAD, None) for each unreadable one; a compressed segment
    that cannot be read on counts as one unreadable line there."""
    try:
        with open_segment(path) as f:
            for raw in f:
                line = parse_line(raw)
                yield (_BAD, None) if line is None else (line.record["seq"], raw)
    except (OSError, EOFError, zlib.error):
        yield _BAD, None


def salvage(data_dir: Path) -> SalvageReport:
    """See the module docstring. The caller holds the data directory's lock."""
    report = SalvageReport()
    segments = list_segments(data_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    damage_before: list[int] = []  # for each damaged spot, the last readable seq before it
    last_good = 0
    for k, (_first, path) in enumerate(segments):
        damaged = False
        for seq, _raw in _scan(path):  # a first pass without holding the lines: most segments are sound
            if seq == _BAD:
                damaged = True
                break
        if not damaged:
            last_good = max([last_good, *(seq for seq, _raw in _scan(path))])
            continue
        scanned = list(_scan(path))
        bad_at = [n for n, (seq, _) in enumerate(scanned, start=1) if seq == _BAD]
        tail_only = k == len(segments) - 1 and all(seq == _BAD for seq, _ in scanned[bad_at[0] - 1:])
        if tail_only:
            continue  # a torn tail: the server drops it on start, nothing acknowledged is in it
        aside = data_dir / DAMAGED_DIR
        aside.mkdir(exist_ok=True)
        copy = aside / f"{path.name}.{stamp}"
        shutil.copy2(path, copy)
        with open(copy, "rb") as f:
            os.fsync(f.fileno())
        fsync_dir(aside)
        report.copies.append(str(copy))
        kept = [raw for seq, raw in scanned if raw is not None]
        for seq, _raw in scanned:
            if seq == _BAD:
                damage_before.append(last_good)
            else:
                last_good = seq

        def write(out: IO[bytes], kept: list[bytes] = kept) -> None:
            out.writelines(kept)

        write_atomically(path, write, compress=is_compressed(path))
        report.kept += len(kept)
        report.dropped_lines += len(bad_at)
        report.history.append({"at": stamp, "segment": path.name, "lines": bad_at, "copy": str(copy)})
    if report.copies:
        following = _next_seqs(data_dir)
        for before in sorted(set(damage_before)):
            after = next((s for s in following if s > before), None)
            if after is not None and after > before + 1:
                report.lost.append((before + 1, after - 1))
        _record(data_dir, report)
    return report


def _next_seqs(data_dir: Path) -> list[int]:
    return [seq for _first, path in list_segments(data_dir) for seq, _raw in _scan(path) if seq != _BAD]


def _record(data_dir: Path, report: SalvageReport) -> None:
    path = data_dir / SALVAGE
    previous: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    doc = {"lost": [*previous.get("lost", []), *[list(r) for r in report.lost]],
           "history": [*previous.get("history", []),
                       *[{**h, "lost": [list(r) for r in report.lost]} for h in report.history]]}
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"

    def write(f: IO[bytes]) -> None:
        f.write(body)

    write_atomically(path, write)
