"""Verifying one journal segment on its own, so `fieldcomms check` can verify several at once.

Within a segment every link of the chain is verified (each line's hash against its predecessor's); the link
into the segment's first line needs the previous segment's last hash, so the worker returns what the caller
needs to verify it (`first_digest`, `first_chain`). Seq order within the segment is checked here, across
segments by the caller. Documents written at or before the snapshot's seq are compared with the snapshot
(`SnapshotDocs`, built by the caller before the workers fork, so they share it without copying).
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from .chain import link
from .journal import open_segment, parse_line
from .salvage import LostSeqs
from .snapshot import SNAPSHOT

# Collections a snapshot may leave out although the journal has them: expired idempotency answers are
# pruned when a snapshot is written (Store.set_prune).
PRUNABLE = frozenset({"idempotency"})


def doc_fingerprint(doc: Any, canonical: bytes | None = None) -> bytes:
    """A short fingerprint of a document's canonical form, to compare the snapshot with the journal. Python's
    bytes hash is SipHash under a random key of this process, inherited by forked workers (PYTHONHASHSEED
    aside): a forger who cannot know the key cannot make a different document match, and it costs a quarter
    of a SHA-256. `canonical`: that form, when the caller has it already (a slice of the journal line)."""
    if canonical is None:
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return hash(canonical).to_bytes(8, "big", signed=True)


BLOCK = 4 << 20


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    """The lines of a segment, read in large blocks (a gzip segment's readline costs more per line than the
    rest of the check's work on it); a last line without its newline is yielded as it is (a torn tail)."""
    tail = b""
    while True:
        block = f.read(BLOCK)
        if not block:
            if tail:
                yield tail
            return
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        for line in lines:
            yield line + b"\n"


_PREFIXES: dict[str, bytes] = {}


def _data_bytes(record: dict[str, Any], body: bytes) -> bytes | None:
    """The canonical bytes of the record's document, sliced from the line's canonical body: the body is
    `{"coll":...,"data":{...},"seq":N,"type":"..."}` (sorted keys) when the record has no auxiliary documents
    and was not redacted. None when it is not that simple (then the document is encoded again)."""
    if "aux" in record or "redacted" in record or "digest" in record:
        return None
    coll = record["coll"]
    prefix = _PREFIXES.get(coll) if isinstance(coll, str) else None
    if prefix is None:
        prefix = b'{"coll":' + orjson.dumps(coll) + b',"data":'
        if isinstance(coll, str) and len(_PREFIXES) < 1000:
            _PREFIXES[coll] = prefix
    if not body.startswith(prefix):
        return None
    end = body.rfind(b',"seq":')
    if end <= len(prefix):
        return None
    return body[len(prefix):end]


class SnapshotDocs:
    """The snapshot's documents as {coll NUL id: seq (8 bytes) + fingerprint}: a few dozen bytes each."""

    def __init__(self, seq: int, chain: bytes, lost: LostSeqs) -> None:
        self.seq = seq
        self.chain = chain
        self.lost = lost
        self.docs: dict[str, bytes] = {}

    def add(self, coll: str, doc: dict[str, Any]) -> None:
        self.docs[f"{coll}\0{doc['id']}"] = int(doc["seq"]).to_bytes(8, "big") + doc_fingerprint(doc)

    def compare(self, seq: int, coll: str, doc: Any, out: SegmentResult, canonical: bytes | None = None) -> None:
        """A document the journal wrote at `seq` (<= the snapshot's seq); `canonical`: its canonical bytes if
        known."""
        if not isinstance(doc, dict):
            return
        entry = self.docs.get(f"{coll}\0{doc.get('id')}")
        if entry is None:
            if coll not in PRUNABLE:
                out.problem(seq, f"{SNAPSHOT} disagrees with the journal: it lacks {coll} {doc.get('id')} "
                                 f"as written at seq {seq}")
            return
        snap_seq = int.from_bytes(entry[:8], "big")
        if snap_seq > seq:
            return  # an older version: the snapshot holds a later one, compared where the journal writes it
        if snap_seq < seq:
            out.problem(seq, f"{SNAPSHOT} disagrees with the journal: it holds an older {coll} {doc.get('id')} "
                             f"than the one written at seq {seq}")
        elif entry[8:] != doc_fingerprint(doc, canonical):
            out.problem(seq, f"{SNAPSHOT} disagrees with the journal about {coll} {doc.get('id')} at seq {seq}")
        else:
            out.matched.append(seq)

    def unmatched(self, matched: set[int]) -> tuple[int, str] | None:
        """The first snapshot document that no journal record matched: (seq, problem)."""
        first: tuple[int, str] | None = None
        for key, entry in self.docs.items():
            seq = int.from_bytes(entry[:8], "big")
            if seq in matched or seq in self.lost or (first is not None and seq >= first[0]):
                continue
            coll, doc_id = key.split("\0", 1)
            first = (seq, f"{SNAPSHOT} holds {coll} {doc_id} at seq {seq}, which the journal did not write")
        return first


@dataclass
class SegmentResult:
    name: str
    first_seq: int | None = None
    first_chain: bytes = b""
    first_digest: bytes = b""
    last_seq: int | None = None
    last_chain: bytes = b""
    records: int = 0
    chain_at_snapshot: bytes | None = None
    problems: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    photos: list[tuple[str, bool]] = field(default_factory=list)  # (id, erased) in seq order
    matched: array[int] = field(default_factory=lambda: array("q"))
    stopped: bool = False  # the chain broke here: what follows in this segment is not verified

    def problem(self, seq: int, why: str) -> None:
        self.problems.append((seq, why))


def verify_segment(path: Path, first_from_name: int, is_last: bool, snapshot: SnapshotDocs | None,
                   lost: LostSeqs) -> SegmentResult:
    out = SegmentResult(path.name)
    previous: bytes | None = None  # None: the first line's link is the caller's to verify
    expected = first_from_name
    offset = 0
    try:
        with open_segment(path) as f:
            lines = _lines(f)
            for n, raw in enumerate(lines, start=1):
                line = parse_line(raw)
                if line is None:
                    where = f"{path.name}: line {n} (byte {offset})"
                    if is_last and all(parse_line(rest) is None for rest in lines):
                        out.notes.append(f"{where}: a torn tail, never acknowledged; the server drops it on start")
                    else:
                        out.problem(expected, f"{where} is corrupt and readable changes follow it "
                                              "(`fieldcomms salvage` keeps what can be kept)")
                        out.stopped = True
                    return out
                at = offset  # where this line starts, for a problem named below
                offset += len(raw)
                record = line.record
                seq = record["seq"]
                digest = line.digest()
                if out.first_seq is None:
                    out.first_seq, out.first_chain, out.first_digest = seq, line.chain, digest
                elif seq != expected:
                    if seq > expected and lost.covers(expected, seq - 1):
                        out.notes.append(f"changes {expected} to {seq - 1} were lost to damage and recorded by "
                                         f"`fieldcomms salvage`; the link to seq {seq} cannot be verified")
                        previous = None
                    elif seq > expected:
                        out.problem(expected, f"{path.name}: line {n} (byte {at}): change {expected} is missing "
                                              f"(seq {seq} follows {expected - 1})")
                        out.stopped = True
                        return out
                    else:
                        out.problem(expected, f"{path.name}: line {n} (byte {at}): seq {seq} appears where "
                                              f"{expected} belongs (a change repeated, inserted or moved)")
                        out.stopped = True
                        return out
                if previous is not None and link(previous, digest) != line.chain:
                    out.problem(seq, f"{path.name}: line {n} (byte {at}): the record or its chain hash was altered"
                                     + (" (a redacted line whose stored digest does not match)"
                                        if record.get("redacted") else ""))
                    out.stopped = True
                    return out
                previous = line.chain
                expected = seq + 1
                out.records += 1
                out.last_seq, out.last_chain = seq, line.chain
                docs = [(record["coll"], record["data"]), *[(c, d) for c, d in record.get("aux", ())]]
                for coll, doc in docs:
                    if coll == "photos" and isinstance(doc, dict):
                        out.photos.append((doc["id"], doc.get("redacted") is True))
                if snapshot is not None and seq <= snapshot.seq:
                    if len(docs) == 1:
                        snapshot.compare(seq, docs[0][0], docs[0][1], out, _data_bytes(record, line.body))
                    else:
                        for coll, doc in docs:
                            snapshot.compare(seq, coll, doc, out)
                    if seq == snapshot.seq:
                        out.chain_at_snapshot = line.chain
    except (OSError, EOFError, zlib.error) as exc:  # a compressed segment cut short or damaged
        out.problem(expected, f"{path.name} cannot be read past byte {offset} of its content: {exc}")
        out.stopped = True
    return out
