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

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .media import MediaStore
from .store.chain import GENESIS, link
from .store.journal import list_segments, open_segment, parse_line
from .store.salvage import LostSeqs, lost_seqs
from .store.snapshot import SNAPSHOT, parse_header

# Collections a snapshot may leave out although the journal has them: expired idempotency answers are
# pruned when a snapshot is written (Store.set_prune).
PRUNABLE = frozenset({"idempotency"})


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


def _doc_digest(doc: Any) -> bytes:
    """A short fingerprint of a document's canonical form, to compare the snapshot with the journal. Python's
    bytes hash is SipHash under a random key of this process (PYTHONHASHSEED aside): a forger who cannot know
    the key cannot make a different document match, and it costs a quarter of a SHA-256 here."""
    return hash(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).to_bytes(8, "big", signed=True)


class _SnapshotComparison:
    """The snapshot's documents, each as {coll NUL id: seq bytes + digest}, ticked off as the journal's
    record at that seq is read and found to hold the same document."""

    def __init__(self, seq: int, chain: bytes, lost: LostSeqs) -> None:
        self.seq = seq
        self.lost = lost
        self.chain = chain
        self.pending: dict[str, bytes] = {}

    def add(self, coll: str, doc: dict[str, Any]) -> None:
        self.pending[f"{coll}\0{doc['id']}"] = int(doc["seq"]).to_bytes(8, "big") + _doc_digest(doc)

    def see(self, seq: int, coll: str, doc: Any, report: CheckReport) -> None:
        """A document the journal wrote at `seq` (<= the snapshot's seq)."""
        if not isinstance(doc, dict):
            return
        key = f"{coll}\0{doc.get('id')}"
        entry = self.pending.get(key)
        if entry is None:
            if coll not in PRUNABLE:
                report.broken(seq, f"{SNAPSHOT} disagrees with the journal: it lacks {coll} {doc.get('id')} "
                                   f"as written at seq {seq}")
            return
        snap_seq = int.from_bytes(entry[:8], "big")
        if snap_seq > seq:
            return  # an older version: the snapshot holds a later one, checked when the journal gets there
        if snap_seq < seq or entry[8:] != _doc_digest(doc):
            report.broken(seq, f"{SNAPSHOT} disagrees with the journal about {coll} {doc.get('id')} at seq {seq}")
        del self.pending[key]  # a later version at or before the snapshot's seq then finds no entry: stale

    def finish(self, report: CheckReport) -> None:
        for key, entry in self.pending.items():
            coll, doc_id = key.split("\0", 1)
            seq = int.from_bytes(entry[:8], "big")
            if seq in self.lost:
                continue  # the journal's copy was lost to damage (see salvage.py): nothing to compare with
            report.broken(seq, f"{SNAPSHOT} holds {coll} {doc_id} at seq {seq}, which the journal did not write")
            return  # the first is enough: the rest follow from it


def _read_snapshot(data_dir: Path, report: CheckReport) -> _SnapshotComparison | None:
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
        comparison = _SnapshotComparison(seq, chain, lost_seqs(data_dir))
        for n, line in enumerate(f, start=2):
            try:
                coll, doc = orjson.loads(line)
                comparison.add(coll, doc)
            except (ValueError, TypeError, KeyError):
                report.problems.append(f"{SNAPSHOT}: line {n} is unreadable")
                return None
            report.snapshot_docs += 1
    return comparison


def _walk_journal(data_dir: Path, report: CheckReport, snapshot: _SnapshotComparison | None,
                  photos: set[str]) -> None:
    segments = list_segments(data_dir)
    report.segments = len(segments)
    lost = lost_seqs(data_dir)
    previous: bytes | None = GENESIS
    expected = 1
    if snapshot is not None and snapshot.seq == 0:
        snapshot = None
    for k, (_first, path) in enumerate(segments):
        is_last = k == len(segments) - 1
        offset = 0
        with open_segment(path) as f:
            for n, raw in enumerate(f, start=1):
                line = parse_line(raw)
                where = f"{path.name}: line {n} (byte {offset})"
                if line is None:
                    unreadable = all(parse_line(rest) is None for rest in f)
                    if is_last and unreadable:
                        report.notes.append(f"{where}: a torn tail, never acknowledged; the server drops it on start")
                    else:
                        report.broken(expected, f"{where} is corrupt and readable changes follow it "
                                                "(`fieldcomms salvage` keeps what can be kept)")
                    return
                offset += len(raw)
                record = line.record
                seq = record["seq"]
                if seq != expected:
                    if seq > expected and lost.covers(expected, seq - 1):
                        report.notes.append(f"changes {expected} to {seq - 1} were lost to damage and recorded "
                                            f"by `fieldcomms salvage`; the link to seq {seq} cannot be verified")
                        previous = None  # nothing to verify this line's link against: take its hash
                        expected = seq
                    elif seq > expected:
                        report.broken(expected, f"{where}: change {expected} is missing (seq {seq} follows "
                                                f"{expected - 1})")
                        return
                    else:
                        report.broken(expected, f"{where}: seq {seq} appears where {expected} belongs "
                                                "(a change repeated, inserted or moved)")
                        return
                chained = line.chain if previous is None else link(previous, line.digest())
                if chained != line.chain:
                    report.broken(seq, f"{where}: the record or its chain hash was altered"
                                       + (" (a redacted line whose stored digest does not match)"
                                          if record.get("redacted") else ""))
                    return
                previous = chained
                expected = seq + 1
                report.journal_records += 1
                report.last_seq = seq
                report.chain_head = chained.hex()
                docs = [(record["coll"], record["data"]), *[(c, d) for c, d in record.get("aux", ())]]
                for coll, doc in docs:
                    if coll == "photos" and isinstance(doc, dict):
                        if doc.get("redacted") is True:  # erased by a purge: no files to expect
                            photos.discard(doc["id"])
                        else:
                            photos.add(doc["id"])
                if snapshot is not None and seq <= snapshot.seq:
                    for coll, doc in docs:
                        snapshot.see(seq, coll, doc, report)
                    if seq == snapshot.seq:
                        if chained != snapshot.chain:
                            report.broken(seq, f"{SNAPSHOT}'s chain hash at seq {seq} disagrees with the journal")
                            return
                        snapshot.finish(report)
                        if report.first_break is not None:
                            return
                        snapshot = None
    if snapshot is not None:
        report.broken(report.last_seq + 1, f"{SNAPSHOT} stands at seq {snapshot.seq} but the journal ends at "
                                           f"seq {report.last_seq}")


def check_data_dir(data_dir: Path) -> CheckReport:
    report = CheckReport()
    if not data_dir.is_dir():
        report.problems.append(f"{data_dir} is not a directory")
        return report
    snapshot = _read_snapshot(data_dir, report)
    for leftover in sorted(data_dir.glob("*.tmp")):
        report.notes.append(f"an unfinished write ({leftover.name}) is present; it is ignored and replaced "
                            "next time")
    photos: set[str] = set()
    try:
        _walk_journal(data_dir, report, snapshot, photos)
    except (OSError, EOFError, zlib.error) as exc:  # a compressed segment cut short or damaged
        report.broken(report.last_seq + 1, f"a journal segment cannot be read: {exc}")
    media = MediaStore(data_dir / "media")
    for photo_id in sorted(photos):
        report.photos += 1
        if not media.verify(photo_id):
            report.problems.append(f"photo {photo_id}: its image or thumbnail file is missing")
    return report
