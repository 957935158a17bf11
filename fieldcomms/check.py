"""`fieldcomms check`: verify a data directory without changing it.

Walks the whole journal from the first change (compressed history included): line checksums, seqs in
order without gaps, and the tamper-evident chain (store/chain.py), naming the first seq where it breaks;
then compares the snapshot with the journal (its chain hash at its seq, and each of its documents with the
journal's record at that document's seq); then checks that every photo record's files exist in the media
store. Safe to run beside a live server: it only reads.

Memory stays bounded by the number of documents in the snapshot (one short digest each), not by the number
of changes: a million changes check in well under a minute (`make bench BENCH=chain`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .media import MediaStore
from .store.chain import GENESIS, link
from .store.journal import list_segments
from .store.salvage import LostSeqs, lost_seqs
from .store.snapshot import SNAPSHOT, parse_header
from .store.verify import SegmentResult, SnapshotDocs, verify_segment


@dataclass
class CheckReport:
    snapshot_seq: int = 0
    snapshot_docs: int = 0
    journal_records: int = 0
    last_seq: int = 0
    segments: int = 0
    photos: int = 0
    chain_head: str = GENESIS.hex()
    first_break: int | None = None  # the first seq where the chain or the snapshot disagrees
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def broken(self, seq: int, why: str) -> None:
        if self.first_break is None:
            self.first_break = seq
        self.problems.append(f"the chain breaks at seq {seq}: {why}")

    def lines(self) -> list[str]:
        out = [
            f"snapshot: seq {self.snapshot_seq}, {self.snapshot_docs} documents",
            f"journal: {self.segments} segment(s), {self.journal_records} records, newest seq {self.last_seq}",
            (f"chain: verified from seq 1 to {self.last_seq}, head {self.chain_head}" if self.first_break is None
             else f"chain: BROKEN at seq {self.first_break}"),
            f"photos: {self.photos} records checked against the media store",
        ]
        out += [f"note: {n}" for n in self.notes]
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("OK" if self.ok else f"{len(self.problems)} problem(s) found")
        return out


def _read_snapshot(data_dir: Path, report: CheckReport) -> SnapshotDocs | None:
    snap = data_dir / SNAPSHOT
    if not snap.exists():
        return None
    with open(snap, "rb") as f:
        try:
            seq, chain = parse_header(f.readline())
        except Exception as exc:  # noqa: BLE001 - any unreadable header is reported, not raised
            report.problems.append(str(exc))
            return None
        report.snapshot_seq = seq
        docs = SnapshotDocs(seq, chain, lost_seqs(data_dir))
        for n, line in enumerate(f, start=2):
            try:
                coll, doc = orjson.loads(line)
                docs.add(coll, doc)
            except (ValueError, TypeError, KeyError):
                report.problems.append(f"{SNAPSHOT}: line {n} is unreadable")
                return None
            report.snapshot_docs += 1
    return docs if seq else None


# Set in the parent just before the workers fork, so they share the snapshot's documents without copying.
_SHARED: tuple[list[tuple[int, Path]], SnapshotDocs | None, LostSeqs] | None = None


def _verify(k: int) -> SegmentResult:
    assert _SHARED is not None
    segments, snapshot, lost = _SHARED
    first, path = segments[k]
    return verify_segment(path, first, k == len(segments) - 1, snapshot, lost)


def _results(segments: list[tuple[int, Path]], snapshot: SnapshotDocs | None, lost: LostSeqs,
             workers: int) -> Iterator[SegmentResult]:
    """Each segment's result, in order, verified by up to `workers` forked processes (segments are independent
    but for the link between them, which `_walk_journal` verifies)."""
    global _SHARED
    _SHARED = (segments, snapshot, lost)
    workers = min(len(segments), workers)
    try:
        if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
            yield from (_verify(k) for k in range(len(segments)))
            return
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_verify, range(len(segments)))
    finally:
        _SHARED = None


def _walk_journal(data_dir: Path, report: CheckReport, snapshot: SnapshotDocs | None,
                  photos: set[str], workers: int) -> None:
    segments = list_segments(data_dir)
    report.segments = len(segments)
    lost = lost_seqs(data_dir)
    problems: list[tuple[int, str]] = []
    previous, last_seq = GENESIS, 0
    matched: set[int] = set()
    broken = False
    for result in _results(segments, snapshot, lost, workers):
        report.notes.extend(result.notes)
        problems.extend(result.problems)
        matched.update(result.matched)
        if broken:
            continue  # the chain is broken before this segment: its own findings are listed, nothing more
        if result.first_seq is not None:
            where = f"{result.name}: line 1"
            if result.first_seq == last_seq + 1:
                if link(previous, result.first_digest) != result.first_chain:
                    problems.append((result.first_seq, f"{where}: the record or its chain hash was altered"))
                    broken = True
            elif result.first_seq > last_seq + 1 and lost.covers(last_seq + 1, result.first_seq - 1):
                report.notes.append(f"changes {last_seq + 1} to {result.first_seq - 1} were lost to damage and "
                                    f"recorded by `fieldcomms salvage`; the link to seq {result.first_seq} "
                                    "cannot be verified")
            elif result.first_seq > last_seq + 1:
                problems.append((last_seq + 1, f"{where}: change {last_seq + 1} is missing (seq "
                                               f"{result.first_seq} follows {last_seq})"))
                broken = True
            else:
                problems.append((last_seq + 1, f"{where}: seq {result.first_seq} appears where {last_seq + 1} "
                                               "belongs (a change repeated, inserted or moved)"))
                broken = True
        if broken:
            continue
        if result.last_seq is not None:
            previous, last_seq = result.last_chain, result.last_seq
            report.journal_records += result.records
        for photo_id, erased in result.photos:
            if erased:  # erased by a purge: no files to expect
                photos.discard(photo_id)
            else:
                photos.add(photo_id)
        if snapshot is not None and result.chain_at_snapshot is not None \
                and result.chain_at_snapshot != snapshot.chain:
            problems.append((snapshot.seq, f"{SNAPSHOT}'s chain hash at seq {snapshot.seq} disagrees with the "
                                           "journal"))
        broken = result.stopped
    report.last_seq = last_seq
    report.chain_head = previous.hex()
    if snapshot is not None:
        if snapshot.seq > last_seq and not broken:
            problems.append((last_seq + 1, f"{SNAPSHOT} stands at seq {snapshot.seq} but the journal ends at "
                                           f"seq {last_seq}"))
        unmatched = snapshot.unmatched(matched)
        if unmatched is not None:
            problems.append(unmatched)
    for seq, why in sorted(problems, key=lambda p: p[0]):
        report.broken(seq, why)


def check_data_dir(data_dir: Path, *, workers: int = 1) -> CheckReport:
    """`workers` > 1 verifies segments in that many forked processes: for the command line, which has no other
    threads (forking a process that runs threads, such as a server's, risks a child stuck on a lock that
    another thread held at the fork)."""
    report = CheckReport()
    if not data_dir.is_dir():
        report.problems.append(f"{data_dir} is not a directory")
        return report
    snapshot = _read_snapshot(data_dir, report)
    for leftover in sorted(data_dir.glob("*.tmp")):
        report.notes.append(f"an unfinished write ({leftover.name}) is present; it is ignored and replaced "
                            "next time")
    photos: set[str] = set()
    _walk_journal(data_dir, report, snapshot, photos, workers)
    media = MediaStore(data_dir / "media")
    for photo_id in sorted(photos):
        report.photos += 1
        if not media.verify(photo_id):
            report.problems.append(f"photo {photo_id}: its image or thumbnail file is missing")
    return report
