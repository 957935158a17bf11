"""`fieldcomms check`: verify a data directory without changing it.

Reads the snapshot and every journal segment (checksums, seq order, gaps), then checks that every photo
record's files exist in the media store. Safe to run beside a live server: it only reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .media import MediaStore
from .store.journal import decode_line, list_segments
from .store.store import SNAPSHOT


@dataclass
class CheckReport:
    snapshot_seq: int = 0
    snapshot_docs: int = 0
    journal_records: int = 0
    last_seq: int = 0
    segments: int = 0
    photos: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [
            f"snapshot: seq {self.snapshot_seq}, {self.snapshot_docs} documents",
            f"journal: {self.segments} segment(s), {self.journal_records} records, newest seq {self.last_seq}",
            f"photos: {self.photos} records checked against the media store",
        ]
        out += [f"note: {n}" for n in self.notes]
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("OK" if self.ok else f"{len(self.problems)} problem(s) found")
        return out


def check_data_dir(data_dir: Path) -> CheckReport:
    report = CheckReport()
    if not data_dir.is_dir():
        report.problems.append(f"{data_dir} is not a directory")
        return report
    photos: dict[str, dict[str, Any]] = {}

    def keep(coll: str, doc: dict[str, Any]) -> None:
        if coll == "photos":
            photos[doc["id"]] = doc

    snap = data_dir / SNAPSHOT
    if snap.exists():
        with open(snap, "rb") as f:
            try:
                header = orjson.loads(f.readline())
                report.snapshot_seq = report.last_seq = int(header["seq"])
            except (ValueError, KeyError, TypeError):
                report.problems.append(f"{SNAPSHOT}: the header line is unreadable")
            for n, line in enumerate(f, start=2):
                try:
                    coll, doc = orjson.loads(line)
                    keep(coll, doc)
                    report.snapshot_docs += 1
                except (ValueError, TypeError):
                    report.problems.append(f"{SNAPSHOT}: line {n} is unreadable")
                    break
    if (data_dir / (SNAPSHOT + ".tmp")).exists():
        report.notes.append("an unfinished snapshot (.tmp) is present; it is ignored and replaced next time")
    segments = list_segments(data_dir)
    report.segments = len(segments)
    for k, (_first, path) in enumerate(segments):
        is_last = k == len(segments) - 1
        offset = 0
        with open(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                record = decode_line(line)
                if record is None:
                    remaining = path.stat().st_size - offset
                    where = f"{path.name}: line {n} (byte {offset})"
                    if is_last:
                        report.notes.append(f"{where}: a torn tail of {remaining} bytes, never acknowledged; "
                                            "the server drops it on start")
                    else:
                        report.problems.append(f"{where}: a bad checksum inside the journal")
                    break
                offset += len(line)
                seq = record["seq"]
                if seq <= report.last_seq:
                    if seq > report.snapshot_seq:
                        report.problems.append(f"{path.name}: seq {seq} repeats or goes back")
                    continue
                if report.last_seq and seq != report.last_seq + 1:
                    report.problems.append(f"{path.name}: seq {seq} follows {report.last_seq}: a gap")
                report.last_seq = seq
                report.journal_records += 1
                keep(record["coll"], record["data"])
                for coll, doc in record.get("aux", ()):
                    keep(coll, doc)
    media = MediaStore(data_dir / "media")
    for photo_id in photos:
        report.photos += 1
        if not media.verify(photo_id):
            report.problems.append(f"photo {photo_id}: its image or thumbnail file is missing")
    return report
