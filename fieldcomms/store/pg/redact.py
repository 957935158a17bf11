"""The retention purge on PostgreSQL (`PgStore.redact`): erase documents, or fields of them, from the current
state and from the whole changes table, leaving each rewritten change's digest so the chain still verifies.

Two steps, with the same rules as the embedded journal (store/redact.py):

1. **The current state, in every worker.** One ordinary change (type `redact`, collection `redactions`,
   `{"id", "at", "documents": [[coll, id, fields or null], ...]}`: ids, no personal data) carries the erased
   versions of the documents as its auxiliary documents: a document erased whole becomes the stub
   `{"id", "seq", "event"?, "redacted": true}`, a report loses `contact`. It goes through the write path like
   any change: compare-and-set on each document's seq (a worker that has not yet applied the purge and writes
   from the old version gets a conflict, and runs again on the erased one), `fc_state` updated in the same
   transaction, and every worker's follower applies it to its own view (its apply hooks drop the officer from
   the map and the positions index). Nobody streams it (no stream carries `redactions`, visibility shows it
   to no one). A worker that starts later loads the erased state.
2. **History** (in fact first, up to the newest seq committed when the purge begins; then again for the
   changes committed before step 1's change). Every `fc_changes` row whose record holds a target (as its document, or
   among its auxiliary documents) is rewritten: the record without the erased values, plus `"digest"` (the
   hex SHA-256 of the original canonical record, which the chain covers) and `"redacted": true`; its `chain`
   column is untouched. `fieldcomms check --database-url` uses the stored digest for a redacted record.

Then `VACUUM fc_changes, fc_state`, so the old row versions' space is reclaimed. What PostgreSQL keeps below
the table level (WAL segments not yet recycled, base backups, a replica's own WAL) is outside what a query can
erase: the deployment's backup retention must be no longer than its data retention.

The purge as a whole is not atomic (as on the embedded store), but a crash at any point leaves the current
state holding whatever history still holds, so running the same purge again (it targets what the current state
holds) completes it. Purges hold an advisory lock (`purge_lock`), so one
worker purges at a time and the server's daily purge runs on one worker.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg import AsyncConnection

from ...errors import DatabaseUnavailable, StorageError, WriteConflict
from ...model import new_id, now_str
from ..redact import Targets, digest_of, prefilter, redact_doc, redact_record, targets_of

if TYPE_CHECKING:
    from .store import PgStore

log = logging.getLogger(__name__)

Doc = dict[str, Any]

REDACTIONS = "redactions"
PURGE_LOCK = 7215042002  # pg_advisory_lock key: one purge at a time in the deployment (migrations use ...001)
BATCH = 500
ATTEMPTS = 10


async def redact(store: PgStore, items: list[tuple[str, str, list[str] | None]]) -> int:
    """Erase the targets from history and from the current state (in every worker); the number of history
    records rewritten.

    History is rewritten first, up to the newest seq committed now, then the current state, then the changes
    committed in between: a crash anywhere leaves the current state still holding what is not erased from
    history yet, so the same purge run again (it targets what the current state holds) completes it."""
    targets = targets_of(items)
    if not targets:
        return 0
    try:
        before = await _committed(store.url)
        touched = await _redact_history(store.url, targets, 0, before + 1)
        upto = await _redact_current(store, targets)
        touched += await _redact_history(store.url, targets, before + 1, upto)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable("The database could not be reached; the purge did not finish. Run it again "
                                  "once the database is back: it completes what is left.") from exc
    await _vacuum(store.url)
    log.info("redacted %d document(s) in %d change(s) before seq %d", len(targets), touched, upto)
    return touched


async def _committed(url: str) -> int:
    async with await AsyncConnection.connect(url, connect_timeout=5) as conn:
        row = await (await conn.execute("SELECT seq FROM fc_counter WHERE id = 1")).fetchone()
    assert row is not None
    return int(row[0])


async def _redact_current(store: PgStore, targets: Targets) -> int:
    """Store the erased versions as one change; the seq before which history is to be rewritten."""
    for _attempt in range(ATTEMPTS):
        changed: list[tuple[str, Doc]] = []
        for (coll, doc_id), fields in targets.items():
            doc = store.get(coll, doc_id)
            if doc is None:
                continue
            new = redact_doc(doc, fields)
            if new != doc:
                changed.append((coll, new))
        if not changed:  # erased already (a purge run again): history up to now
            return store.last_seq + 1
        note = {"id": new_id("red"), "at": now_str(),
                "documents": [[c, i, None if f is None else sorted(f)] for (c, i), f in targets.items()]}

        def erased(_stored: Doc, docs: list[tuple[str, Doc]] = changed) -> list[tuple[str, Doc]]:
            return docs

        try:
            stored = await store.append("redact", REDACTIONS, note, aux=erased)
        except WriteConflict:
            continue  # a document moved on meanwhile; the view has caught up: erase its newer version
        return int(stored["seq"])
    raise StorageError("the purge kept conflicting with other writes; nothing was erased, try again")


async def _redact_history(url: str, targets: Targets, lo: int, hi: int) -> int:
    """Rewrite the records with lo <= seq < hi that hold a target."""
    if hi <= lo:
        return 0
    colls = [c for c, _ in targets]
    ids = [i for _, i in targets]
    might_hold = prefilter(targets)
    touched = 0
    async with await AsyncConnection.connect(url, connect_timeout=5) as reader, \
            await AsyncConnection.connect(url, connect_timeout=5) as writer:
        pending: list[tuple[int, bytes]] = []

        async def flush() -> None:
            nonlocal pending
            if not pending:
                return
            async with writer.transaction():
                await writer.execute(
                    "UPDATE fc_changes c SET record = k.record FROM unnest(%s::bigint[], %s::bytea[]) AS "
                    "k(seq, record) WHERE c.seq = k.seq", ([s for s, _ in pending], [r for _, r in pending]))
            pending = []

        async with reader.transaction(), reader.cursor(name="fc_redact", binary=True) as cur:
            cur.itersize = 2000
            # The targets' own changes by (coll, id); any change carrying auxiliary documents is read too and
            # searched here (an id inside its bytes), as the embedded purge searches every journal line.
            await cur.execute(
                "SELECT c.seq, c.record FROM fc_changes c WHERE c.seq >= %s AND c.seq < %s AND ("
                "(c.coll, c.id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
                "OR position('\"aux\":'::bytea in c.record) > 0) ORDER BY c.seq", (lo, hi, colls, ids))
            async for seq, raw in cur:
                raw = bytes(raw)
                if not might_hold(raw):
                    continue
                record = orjson.loads(raw)
                new = redact_record(record, digest_of(record), targets)
                if new is None:
                    continue
                pending.append((int(seq), orjson.dumps(new)))
                touched += 1
                if len(pending) >= BATCH:
                    await flush()
        await flush()
    return touched


async def _vacuum(url: str) -> None:
    """Reclaim the erased row versions now rather than whenever autovacuum comes by (best effort: a purge
    that erased its rows is not failed by a VACUUM that could not run)."""
    try:
        async with await AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
            await conn.execute("VACUUM fc_changes, fc_state")
    except psycopg.Error as exc:
        log.warning("VACUUM after the purge failed (autovacuum will reclaim the space): %s", exc)


@contextlib.asynccontextmanager
async def purge_lock(url: str, *, wait: bool, timeout_s: float = 60.0) -> AsyncIterator[bool]:
    """Hold the deployment's purge lock for the block: True if held; False if `wait` is false and another
    worker holds it (or, waiting, if it stayed taken for `timeout_s`). A session-level advisory lock on a
    connection of its own: if this worker dies, PostgreSQL lets go of it."""
    try:
        conn = await AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    async with conn:
        if wait:
            await conn.execute(f"SET lock_timeout = {int(timeout_s * 1000)}")
            try:
                await conn.execute("SELECT pg_advisory_lock(%s)", (PURGE_LOCK,))
                held = True
            except psycopg.errors.LockNotAvailable:
                held = False
        else:
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (PURGE_LOCK,))).fetchone()
            held = bool(row and row[0])
        try:
            yield held
        finally:
            if held and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (PURGE_LOCK,))
