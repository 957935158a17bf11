"""The snapshot file: the whole view at one seq, so a start reads it and only the journal after it.

Format 2: a header line ``{"seq", "format": 2, "chain": <hex chain hash at seq>}`` then one line per
document, ``[coll, doc]``, in seq order (loading rebuilds the seq logs, which must grow in order). The chain
hash lets `fieldcomms check` confirm that the snapshot stands where the journal says it does; the documents
are compared with the journal's records at their seqs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import StorageError
from .chain import GENESIS
from .journal import write_atomically

SNAPSHOT = "snapshot.jsonl"
FORMAT = 2

Doc = dict[str, Any]


def write_snapshot(data_dir: Path, seq: int, chain: bytes, tables: dict[str, list[Doc]]) -> None:
    def write(f: IO[bytes]) -> None:
        f.write(orjson.dumps({"seq": seq, "format": FORMAT, "chain": chain.hex()}) + b"\n")
        # In seq order, not table order: an edited item keeps its old place in its table's dict.
        prefixes = {name: b"[" + orjson.dumps(name) + b"," for name in tables}
        entries = sorted(((name, doc) for name, docs in tables.items() for doc in docs),
                         key=lambda entry: entry[1]["seq"])
        for name, doc in entries:
            f.write(prefixes[name] + orjson.dumps(doc) + b"]\n")

    write_atomically(data_dir / SNAPSHOT, write)


def parse_header(line: bytes) -> tuple[int, bytes]:
    """(seq, chain hash) from a snapshot's first line; StorageError for one this version cannot vouch for."""
    try:
        header = orjson.loads(line)
        seq = int(header["seq"])
        if header.get("format") != FORMAT:
            raise StorageError(
                f"{SNAPSHOT} is in format {header.get('format')!r}, from before the tamper-evident chain "
                f"(format {FORMAT}); this version cannot continue its history. Start from a new data directory.")
        chain = bytes.fromhex(header["chain"]) if seq else GENESIS
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{SNAPSHOT}: the header line is unreadable ({exc})") from None
    if len(chain) != 32:
        raise StorageError(f"{SNAPSHOT}: the header's chain hash is not 32 bytes")
    return seq, chain


def read_snapshot(data_dir: Path) -> tuple[int, bytes, list[tuple[str, Doc]]] | None:
    """(seq, chain hash, [(coll, doc)] in seq order), or None without a snapshot."""
    path = data_dir / SNAPSHOT
    if not path.exists():
        return None
    with open(path, "rb") as f:
        seq, chain = parse_header(f.readline())
        entries = [orjson.loads(line) for line in f]
    seqs = [doc["seq"] for _coll, doc in entries]
    if seqs != sorted(seqs):  # written in seq order; this only checks
        entries.sort(key=lambda entry: entry[1]["seq"])
    return seq, chain, entries


def iter_entries(f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of the documents after the header, for readers that want the bytes."""
    yield from enumerate(f, start=2)
