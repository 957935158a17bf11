"""Expired idempotency answers leave PostgreSQL and every worker's memory, as they leave the embedded store's
snapshot.

The rule is the store's prune callback (`Idempotency.expired`: older than `idempotency_ttl_hours`, at least 24).
Every worker runs the same job on its own clock: it deletes the rows its view finds expired, each only at the
version it saw (a key answered again meanwhile keeps its fresh row), then drops them from its view. Two workers
deleting the same rows is harmless: the second deletes nothing. The delete goes by primary key, so it costs the
number of expired answers, not the size of the table.

Workers do not prune at the same instant, so for a while one worker's view may hold an expired answer that the
table no longer has, or the reverse. Expired means absent in both places (a request with that key is new), so
the write path lets such a row be taken whatever version the writer saw: see `stale_keys`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from psycopg import AsyncConnection

if TYPE_CHECKING:
    from .store import PgStore

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0  # the lifetime is a day or more: a few minutes late costs nothing
PRUNED_COLLS = ("idempotency",)  # the only documents that expire (see Idempotency.expired)
# A rate bucket untouched this long is full again (any configured limit refills within minutes), so its row is
# the same as none: deleted, or every address that ever failed a token check would keep one.
IDLE_BUCKET_S = 86_400.0

Doc = dict[str, Any]
Prune = Callable[[str, Doc], bool]


async def prune_expired(store: PgStore, prune: Prune) -> int:
    """Delete the expired answers this worker's view holds from the table, then from the view; the number of
    rows deleted here (another worker may have deleted the rest). Raises what psycopg raises."""
    expired = [(coll, doc["id"], doc["seq"]) for coll in PRUNED_COLLS for doc in store.all(coll) if prune(coll, doc)]
    if not expired:
        return 0
    deleted = 0
    async with store.connection() as conn:
        for coll in PRUNED_COLLS:
            ids = [(i, s) for c, i, s in expired if c == coll]
            if ids:
                cur = await conn.execute(
                    "DELETE FROM fc_state s USING unnest(%s::text[], %s::bigint[]) AS k(id, seq) "
                    "WHERE s.coll = %s AND s.id = k.id AND s.seq = k.seq",
                    ([i for i, _ in ids], [s for _, s in ids], coll))
                deleted += cur.rowcount
    # No await from here on: the view cannot change between the check and the drop.
    store.drop_expired(prune, [(c, i) for c, i, _ in expired])
    if deleted:
        log.info("pruned %d expired idempotency answers", deleted)
    return deleted


async def prune_idle_buckets(store: PgStore) -> int:
    """Delete the shared rate buckets (fc_rate) nobody used for IDLE_BUCKET_S; rows deleted."""
    async with store.connection() as conn:
        cur = await conn.execute("DELETE FROM fc_rate WHERE at < extract(epoch FROM clock_timestamp()) - %s",
                                 (IDLE_BUCKET_S,))
        return cur.rowcount


async def stale_keys(conn: AsyncConnection[Any], store: PgStore, prune: Prune | None,
                     wants: Iterable[tuple[str, str, int | None]], current: dict[tuple[str, str], int],
                     claimed: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of the (coll, id, expected seq) a batch writes whose expectation does not hold, those it may take all the
    same because what stands in the way is expired: the row (locked by the caller) holds an expired answer, or
    the row is gone (pruned) and the writer expected a version its view finds expired."""
    if prune is None:
        return set()
    doubtful = [(c, i, e) for c, i, e in wants if c in PRUNED_COLLS
                and not ((e is None and (c, i) in claimed) or (e is not None and current.get((c, i)) == e))]
    if not doubtful:
        return set()
    stale: set[tuple[str, str]] = set()
    present = [(c, i) for c, i, _ in doubtful if (c, i) in current]
    if present:
        cur = await conn.execute(
            "SELECT s.coll, s.id, s.doc FROM fc_state s JOIN unnest(%s::text[], %s::text[]) AS k(coll, id) "
            "ON s.coll = k.coll AND s.id = k.id", ([c for c, _ in present], [i for _, i in present]))
        for c, i, doc in await cur.fetchall():
            if prune(c, orjson.loads(doc)):
                stale.add((c, i))
    for c, i, expect in doubtful:
        if (c, i) in claimed and expect is not None:
            seen = store.get(c, i)
            if seen is not None and seen["seq"] == expect and prune(c, seen):
                stale.add((c, i))
    return stale
