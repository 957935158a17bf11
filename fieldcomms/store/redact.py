"""Erasing personal data from the journal's history (the retention purge) without breaking the chain.

A redacted journal line keeps its seq, type, collection and chain hash; the erased document (or the erased
top-level fields of it) is gone, and the record gains ``"redacted": true`` and ``"digest"``: the hex
SHA-256 of the original canonical record, which is what the chain covers. `fieldcomms check` uses that
stored digest for a redacted line, so the chain still verifies; what is left of a redacted record is then
covered only by its stored digest (an edit to the remaining content of a redacted line is not detected by
the chain, but the digest still proves which original stood there).

A document erased whole becomes a stub ``{"id", "seq", "event"?, "redacted": true}``: it keeps its place in
the seq-ordered indexes and anyone reading it sees that something was erased.

Files are rewritten, never edited in place: a new file is written beside the old one, fsynced and renamed
over it, so the erased bytes are left in no file of the data directory (compressed segments included).
Each file is replaced whole, but the purge as a whole is not atomic: a crash between rewriting the segments and
writing the new snapshot leaves a snapshot that still holds the erased values (and `fieldcomms check` reports
it disagreeing with the redacted journal). Running the same purge again completes it; it is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from .chain import canonical, record_digest
from .journal import (
    Line,
    encode_line,
    is_compressed,
    list_segments,
    open_segment,
    parse_line,
    write_atomically,
)

Doc = dict[str, Any]
Targets = dict[tuple[str, str], frozenset[str] | None]  # (coll, id) -> fields to erase, None for all of it


def targets_of(items: Iterable[tuple[str, str, list[str] | None]]) -> Targets:
    """Merge the requested erasures: the same document twice erases the union (or all of it)."""
    out: Targets = {}
    for coll, doc_id, fields in items:
        key = (coll, doc_id)
        if fields is None or (key in out and out[key] is None):
            out[key] = None
        else:
            out[key] = (out.get(key) or frozenset()) | frozenset(fields)
    return out


def redact_doc(doc: Doc, fields: frozenset[str] | None) -> Doc:
    if fields is None:
        stub: Doc = {k: doc[k] for k in ("id", "seq", "event") if k in doc}
        stub["redacted"] = True
        return stub
    return {k: v for k, v in doc.items() if k not in fields}


def _redact_record(record: Doc, targets: Targets) -> Doc | None:
    """The record with the targets erased, or None when it holds none of them."""
    changed = False
    data = record.get("data")
    key = (record.get("coll"), data.get("id") if isinstance(data, dict) else None)
    if key in targets and isinstance(data, dict):
        new = redact_doc(data, targets[key])  # type: ignore[index]
        if new != data:
            record = {**record, "data": new}
            changed = True
    aux = record.get("aux")
    if isinstance(aux, list):
        new_aux = []
        for entry in aux:
            coll, doc = entry
            fields_key = (coll, doc.get("id") if isinstance(doc, dict) else None)
            if fields_key in targets and isinstance(doc, dict):
                new_doc = redact_doc(doc, targets[fields_key])  # type: ignore[index]
                if new_doc != doc:
                    changed = True
                    doc = new_doc
            new_aux.append([coll, doc])
        if changed:
            record = {**record, "aux": new_aux}
    return record if changed else None


def digest_of(record: Doc) -> bytes:
    """The record digest the chain covers: the stored original's for a redacted record, else computed."""
    stored = record.get("digest") if record.get("redacted") is True else None
    if isinstance(stored, str):
        try:
            return bytes.fromhex(stored)
        except ValueError:
            return b""
    return record_digest(canonical(record))


def redact_record(record: Doc, digest: bytes, targets: Targets) -> Doc | None:
    """The record with the targets erased, carrying `digest` (its original's) and `"redacted": true`; None
    when it holds none of them. Shared by the journal (below) and PostgreSQL's changes table."""
    new = _redact_record(record, targets)
    if new is None:
        return None
    new["digest"] = digest.hex()
    new["redacted"] = True
    return new


def redact_line(line: Line, targets: Targets) -> bytes | None:
    new = redact_record(line.record, line.digest(), targets)
    if new is None:
        return None
    return encode_line(orjson.dumps(new, option=orjson.OPT_SORT_KEYS), line.chain)


# Up to this many targets, a line is searched for each target's id; beyond, for each targeted collection's
# name (and auxiliary documents), and the lines that pass are parsed: an event with thousands of reporters must
# not cost thousands of substring searches per line of history.
NEEDLES_MAX = 64


def prefilter(targets: Targets) -> Callable[[bytes], bool]:
    """A cheap test that a stored record (its bytes) may hold a target; False only when it cannot."""
    if len(targets) <= NEEDLES_MAX:
        needles = [orjson.dumps(doc_id) for _coll, doc_id in targets]
        return lambda raw: any(needle in raw for needle in needles)
    colls = [b'"coll":' + orjson.dumps(coll) for coll in {c for c, _ in targets}] + [b'"aux":']
    return lambda raw: any(needle in raw for needle in colls)


def redact_segments(data_dir: Path, targets: Targets, upto_seq: int) -> int:
    """Rewrite every segment that holds a target in a change up to `upto_seq` (all of them closed: the
    caller rotated the writer past it). Returns the number of journal records rewritten."""
    might_hold = prefilter(targets)

    def rewritten(raw: bytes) -> bytes | None:
        if not might_hold(raw):  # most lines: substring tests, no parsing
            return None
        line = parse_line(raw)
        return None if line is None else redact_line(line, targets)

    touched = 0
    for first, path in list_segments(data_dir):
        if first > upto_seq:
            continue
        with open_segment(path) as f:  # a first pass finds out whether the file must be rewritten at all
            if not any(rewritten(raw) is not None for raw in f):
                continue
        counted = [0]

        def write(dst: IO[bytes], path: Path = path, counted: list[int] = counted) -> None:
            with open_segment(path) as src:  # streamed: a segment may be far larger than memory allows
                for raw in src:
                    new = rewritten(raw)
                    if new is not None:
                        counted[0] += 1
                    dst.write(raw if new is None else new)

        write_atomically(path, write, compress=is_compressed(path))
        touched += counted[0]
    return touched


def remove_leftovers(data_dir: Path) -> None:
    """Half-written files from an interrupted write may hold erased bytes; nothing reads them."""
    for path in data_dir.glob("*.tmp"):
        path.unlink()
