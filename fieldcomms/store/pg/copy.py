"""`fieldcomms migrate --data-dir DIR --database-url URL`: copy an embedded deployment into an empty database.

Every change keeps its seq. The journal since the last snapshot is copied record for record; before that, the
snapshot holds only each item's newest version, so those seqs are copied as the snapshot has them (type
"snapshot") and a seq whose every document was replaced later becomes a "superseded" placeholder: the changes
table stays gapless from 1, the chain is computed over all of it, and `check` passes on both sides afterwards.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import psycopg

from ...config import Settings
from ...errors import StorageError
from ..journal import RecoveryReport, list_segments, read_segment
from ..store import SNAPSHOT, Store
from .chainhash import GENESIS, canonical, chain_hash
from .migrations import migrate
from .store import one_line, parse_url

Doc = dict[str, Any]
MAIN_LAST = {"idempotency"}  # of the documents written with one seq, these were the aux ones


def _records(data_dir: Path, snapshot_seq: int, top: int) -> list[Doc]:
    by_seq: dict[int, list[tuple[str, Doc]]] = defaultdict(list)
    snap = data_dir / SNAPSHOT
    if snap.exists():
        with open(snap, "rb") as f:
            f.readline()
            for line in f:
                coll, doc = orjson.loads(line)
                by_seq[doc["seq"]].append((coll, doc))
    records: list[Doc] = []
    for seq in range(1, snapshot_seq + 1):
        docs = sorted(by_seq.get(seq, ()), key=lambda cd: cd[0] in MAIN_LAST)
        if not docs:
            records.append({"seq": seq, "type": "superseded", "coll": "", "data": {"id": "", "seq": seq}})
            continue
        record: Doc = {"seq": seq, "type": "snapshot", "coll": docs[0][0], "data": docs[0][1]}
        if len(docs) > 1:
            record["aux"] = [list(cd) for cd in docs[1:]]
        records.append(record)
    report = RecoveryReport()
    for _first, path in list_segments(data_dir):
        for record in read_segment(path, report, repair=False):
            if record["seq"] > snapshot_seq:
                records.append(record)
    seqs = [r["seq"] for r in records]
    if seqs != list(range(1, top + 1)):
        raise StorageError("the data directory's journal has a gap; run `fieldcomms check --data-dir` first")
    return records


async def copy_data_dir(settings: Settings) -> int:
    from ...services import Services

    try:
        url = parse_url(settings.database_url)
    except StorageError as exc:
        print(f"fieldcomms: {exc}", file=sys.stderr)
        return 2
    store = Store(settings.data_path, fsync=settings.fsync)
    Services(settings, store)  # registers the unique indexes (callsigns, token hashes) the database enforces
    try:
        await store.open()
    except StorageError as exc:
        print(f"fieldcomms: cannot migrate: {exc}", file=sys.stderr)
        return 1
    try:
        records = _records(settings.data_path, store.snapshot_seq, store.last_seq)
        state = [(coll, doc) for coll in store.view.tables() for doc in store.all(coll)]
        unique = [(coll, name, str(key), doc["id"]) for coll, doc in state for name, key in store.unique_keys(coll, doc)]
        top = store.last_seq
    except StorageError as exc:
        print(f"fieldcomms: cannot migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close(snapshot=False)  # the data directory is left as it was
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=3) as conn:
            await migrate(conn)
            async with conn.transaction():
                row = await (await conn.execute("SELECT seq FROM fc_counter WHERE id = 1 FOR UPDATE")).fetchone()
                taken = await (await conn.execute("SELECT count(*) FROM fc_state")).fetchone()
                if (row and row[0]) or (taken and taken[0]):
                    print("fieldcomms: cannot migrate: the database already holds a deployment; use an empty one",
                          file=sys.stderr)
                    return 1
                prev = GENESIS
                async with conn.cursor().copy("COPY fc_changes (seq, type, coll, id, event, record, chain) "
                                              "FROM STDIN") as copy:
                    for r in records:
                        prev = chain_hash(prev, canonical(r))
                        data = r["data"]
                        await copy.write_row((r["seq"], r["type"], r["coll"], data.get("id") or "",
                                              data.get("event") or "", orjson.dumps(r), prev))
                async with conn.cursor().copy("COPY fc_state (coll, id, seq, doc) FROM STDIN") as copy:
                    for coll, doc in state:
                        await copy.write_row((coll, doc["id"], doc["seq"], orjson.dumps(doc)))
                async with conn.cursor().copy("COPY fc_unique (coll, name, key, id) FROM STDIN") as copy:
                    for row_ in unique:
                        await copy.write_row(row_)
                await conn.execute("UPDATE fc_counter SET seq = %s, hash = %s WHERE id = 1", (top, prev))
    except psycopg.Error as exc:
        print(f"fieldcomms: cannot migrate: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"Copied {len(records)} changes (seq 1 to {top}) and {len(state)} documents into the database.")
    print(f"Photos stay in {settings.media_path}: serve with media_dir set to it (every worker must see it).")
    return 0
