"""PgStore: the deployment in PostgreSQL, the same in-memory view as the embedded store in every worker.

Write path: `append` queues the change; one committer task per worker batches what is queued into one
transaction (group commit): lock the items it replaces and compare their seq (compare-and-set), claim new
ids and unique keys, then take the one-row counter last, insert the changes, update the current state, and
NOTIFY once. The caller's future resolves only when this worker's follower has applied that seq, after every
seq before it: read-your-writes before the 201, and listeners (the live broker) hear every change in seq order
whichever worker wrote it.

Read path: memory only (MemoryView), so reads keep answering while PostgreSQL is away; writes then fail fast
with DatabaseUnavailable (503, Retry-After) and the worker recovers by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import DatabaseUnavailable, StorageError, StoreUnavailable, WriteConflict
from ..memory import Change, Doc, MemoryView
from ..protocol import WRITES_DONE
from .chainhash import GENESIS, canonical, chain_hash
from .load import load_state
from .migrations import migrate
from .prune import PRUNE_EVERY_S, prune_expired, prune_idle_buckets, stale_keys

log = logging.getLogger(__name__)

CHANNEL = "fc_changes"
BATCH_MAX = 500
PULL_MAX = 5000
POLL_S = 1.0  # a missed NOTIFY (a dropped LISTEN connection) costs at most this long
COALESCE_S = 0.02  # under load, another worker's changes are pulled at most this often (one query for several)
CONNECT_TIMEOUT_S = 3
DOWN = (psycopg.OperationalError, PoolTimeout)  # the database cannot be reached (or went away mid-way)
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

Aux = Callable[[Doc], Iterable[tuple[str, Doc]]]


@dataclass
class _Write:
    type: str
    coll: str
    doc: Doc
    aux: Aux | None
    fut: asyncio.Future[int]
    # filled in by the committer
    docs: list[tuple[str, Doc]] = field(default_factory=list)


def parse_url(url: str) -> str:
    """The URL as libpq takes it, or StoreUnavailable naming what is wrong with it."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreUnavailable(f"database_url {url!r} is not a postgresql://user@host:port/dbname URL")
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"database_url is malformed: {str(exc).strip().splitlines()[0]}") from None
    return url


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PgStore(MemoryView):
    """See the module docstring. Create, `await open()`, use, `await close()`."""

    def __init__(self, url: str, *, max_lag_s: float = 5.0, pool_size: int = 3) -> None:
        super().__init__()
        self._head: tuple[int, bytes] = (0, GENESIS)  # the chain at the newest applied change
        self.url = parse_url(url)
        self.max_lag_s = max_lag_s
        self.pool_size = pool_size
        self.opened = False
        self._pool: AsyncConnectionPool | None = None
        self._queue: list[_Write] = []
        self._wake_commit = asyncio.Event()
        self._doorbell = asyncio.Event()
        self._progress = asyncio.Event()  # set, and replaced, each time the follower has applied something
        self._ringing = False
        self._pulled_at = 0.0  # loop time of the last pull
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.db_ok = False
        self.db_error = ""
        self.committed_seq = 0  # the newest seq known to be committed (by anyone)
        self._behind_since: float | None = None
        self.commits = 0
        self.commit_seconds = 0.0
        self.conflicts = 0
        self._prune: Callable[[str, Doc], bool] | None = None
        self._refusing: set[asyncio.Task[None]] = set()

    def set_prune(self, prune: Callable[[str, Doc], bool]) -> None:
        """prune(coll, doc) -> True: an expired idempotency answer, deleted from the table and dropped from the
        view every PRUNE_EVERY_S by every worker (see prune.py)."""
        self._prune = prune

    # ---- lifecycle ------------------------------------------------------------------------------

    async def _connect(self, **kw: Any) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, **kw)

    async def open(self) -> None:
        try:
            async with await self._connect() as conn:
                await migrate(conn)
            await self._load()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot use the database: {one_line(exc)}") from None
        self._pool = AsyncConnectionPool(self.url, min_size=1, max_size=self.pool_size, open=False, timeout=3.0,
                                         kwargs={"connect_timeout": CONNECT_TIMEOUT_S})
        await self._pool.open()
        self.db_ok = True
        self.opened = True
        self._tasks = [asyncio.create_task(coro) for coro in (self._committer(), self._follower(), self._listen(),
                                                                 self._pruner())]
        await self.catch_up()

    async def close(self, *, snapshot: bool = True) -> None:
        if not self.opened:
            return
        self.opened = False
        self._closing = True
        self._wake_commit.set()
        # Writes already queued are committed (or fail) before the connections go.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), timeout=5.0)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):  # shutdown must finish within seconds, whatever hangs
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout=5.0)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(StorageError("the store closed before this change came back"))
        self._waiters.clear()
        if self._pool is not None:
            await self._pool.close()

    async def _drain(self) -> None:
        while self._queue or any(not f.done() for f in self._waiters.values()):
            await self._next_progress(0.05)

    async def _next_progress(self, within_s: float) -> None:
        """Wait until the follower applied something (or `within_s` passed)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._progress.wait(), within_s)

    async def _load(self) -> None:
        """The current state as of one counter value, in seq order (the seq logs bisect), then follow from there."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # as the embedded store: a million acyclic dicts need no collector passes while loading
        self._loading = True
        self._hooks_by_coll.clear()
        try:
            seq, head = await asyncio.to_thread(load_state, self.url, self.apply_loaded,
                                                connect_timeout=CONNECT_TIMEOUT_S)
            self.last_seq = self.committed_seq = seq
            self._head = (seq, head)
        finally:
            self._end_loading()
            if gc_was_enabled:
                gc.enable()
            if self.last_seq > 50_000:
                gc.freeze()

    # ---- writes ---------------------------------------------------------------------------------

    async def append(self, type: str, coll: str, doc: Doc, *, aux: Aux | None = None) -> Doc:
        """Store a new version of `doc` as one change; returns it with its seq once this worker applied it.

        Raises WriteConflict (after catching up) if the item moved on or a key was taken meanwhile, and
        DatabaseUnavailable (503) while PostgreSQL cannot be reached."""
        await self.append_nowait(type, coll, doc, aux=aux)  # a WriteConflict comes after catching up
        done = WRITES_DONE.get()
        if done is not None:
            done[0] += 1
        return self.get(coll, doc["id"]) or doc

    def append_nowait(self, type: str, coll: str, doc: Doc, *, aux: Aux | None = None) -> asyncio.Future[int]:
        if not self.opened:
            raise StorageError("the store is not open")
        if not self.db_ok:
            raise DatabaseUnavailable()
        for guard in self._guards:  # as the embedded store: a caller revoked mid-request writes nothing
            guard(self)
        orjson.dumps(doc)  # an unencodable doc must fail here, in its caller, not in a shared batch
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(type, coll, doc, aux, fut))
        self._wake_commit.set()
        return fut

    async def _committer(self) -> None:
        while True:
            await self._wake_commit.wait()
            self._wake_commit.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
                await self._commit(batch)

    async def _commit(self, batch: list[_Write]) -> None:
        assert self._pool is not None
        started = time.perf_counter()
        for attempt in range(5):
            try:
                accepted, conflicts = await self._transaction(batch)
                break
            except RETRYABLE:
                await asyncio.sleep(0.01 * (attempt + 1))
            except DOWN as exc:
                self._set_down(exc)
                for w in batch:
                    if not w.fut.done():
                        w.fut.set_exception(DatabaseUnavailable())
                return
            except Exception as exc:  # a bug or a refused statement: these writes fail, the worker goes on
                log.exception("write transaction failed")
                for w in batch:
                    if not w.fut.done():
                        w.fut.set_exception(StorageError(f"the write failed: {one_line(exc)}"))
                return
        else:
            for w in batch:
                w.fut.set_exception(DatabaseUnavailable("The database is too busy; try again."))
            return
        self.commits += 1
        self.commit_seconds += time.perf_counter() - started
        if conflicts:
            self.conflicts += len(conflicts)
            task = asyncio.get_running_loop().create_task(self._refuse_after_catching_up(conflicts))
            self._refusing.add(task)
            task.add_done_callback(self._refusing.discard)
        for seq, w in accepted:
            if seq <= self.last_seq:  # the follower got there first
                w.fut.set_result(seq)
            else:
                self._waiters[seq] = w.fut
        if accepted:
            self.committed_seq = max(self.committed_seq, accepted[-1][0])
            self._doorbell.set()

    async def _transaction(self, batch: list[_Write]) -> tuple[list[tuple[int, _Write]], list[_Write]]:
        assert self._pool is not None
        for w in batch:  # provisional: which documents each write touches (aux may name more)
            w.docs = [(w.coll, w.doc), *((c, d) for c, d in (w.aux({**w.doc, "seq": 0}) if w.aux else ()))]
        keys = sorted({(c, d["id"]) for w in batch for c, d in w.docs})
        async with self._pool.connection() as conn, conn.transaction():
            # Lock what exists (in key order, so two workers' batches cannot deadlock on each other).
            cur = await conn.execute(
                "SELECT s.coll, s.id, s.seq FROM fc_state s JOIN unnest(%s::text[], %s::text[]) AS k(coll, id) "
                "ON s.coll = k.coll AND s.id = k.id ORDER BY s.coll, s.id FOR UPDATE OF s",
                ([c for c, _ in keys], [i for _, i in keys]))
            current = {(c, i): s for c, i, s in await cur.fetchall()}
            fresh = [k for k in keys if k not in current]
            claimed: set[tuple[str, str]] = set()
            if fresh:
                # A placeholder row claims a new id; a concurrent claim waits for ours and then gets nothing.
                cur = await conn.execute(
                    "INSERT INTO fc_state (coll, id, seq, doc) SELECT c, i, 0, ''::bytea "
                    "FROM unnest(%s::text[], %s::text[]) AS k(c, i) ON CONFLICT DO NOTHING RETURNING coll, id",
                    ([c for c, _ in fresh], [i for _, i in fresh]))
                claimed = {(c, i) for c, i in await cur.fetchall()}
            # Expired idempotency answers count as absent, whichever version the writer saw (see prune.py).
            stale = await stale_keys(conn, self, self._prune, [(c, d["id"], d.get("seq")) for w in batch
                                                               for c, d in w.docs], current, claimed)
            touched: set[tuple[str, str]] = set()
            ok: list[_Write] = []
            conflicts: list[_Write] = []
            for w in batch:
                good = True
                for c, d in w.docs:
                    key = (c, d["id"])
                    expect = d.get("seq")
                    if key in touched:
                        good = False  # an earlier write in this batch changed it: this one read an old version
                    elif key in stale:
                        pass
                    elif expect is None:
                        good = good and key in claimed
                    else:
                        good = good and current.get(key) == expect
                if good and any(self._unique_fns.get(c) for c, _ in w.docs):
                    good = await self._claim_unique(conn, w)
                if good:
                    ok.append(w)
                    touched.update((c, d["id"]) for c, d in w.docs)
                else:
                    conflicts.append(w)
            unused = [k for k in claimed if k not in touched]
            if unused:
                await conn.execute("DELETE FROM fc_state s USING unnest(%s::text[], %s::text[]) AS k(coll, id) "
                                   "WHERE s.coll = k.coll AND s.id = k.id",
                                   ([c for c, _ in unused], [i for _, i in unused]))
            if not ok:
                return [], conflicts
            # The counter last: its row lock is held from here to the commit, so seqs commit in order.
            cur = await conn.execute("UPDATE fc_counter SET seq = seq + %s WHERE id = 1 RETURNING seq, hash",
                                     (len(ok),))
            row = await cur.fetchone()
            assert row is not None
            seq, prev = int(row[0]) - len(ok), bytes(row[1])
            changes: list[tuple[Any, ...]] = []
            state: dict[tuple[str, str], tuple[int, bytes]] = {}
            accepted: list[tuple[int, _Write]] = []
            for w in ok:
                seq += 1
                stored = {**w.doc, "seq": seq}
                extra = [(c, {**d, "seq": seq}) for c, d in (w.aux(stored) if w.aux else ())]
                record: Doc = {"seq": seq, "type": w.type, "coll": w.coll, "data": stored}
                if extra:
                    record["aux"] = extra
                # Stored as written (key order is what clients see); hashed in canonical form.
                prev = chain_hash(prev, canonical(record))
                changes.append((seq, w.type, w.coll, stored["id"], stored.get("event") or "", orjson.dumps(record),
                                prev))
                for c, d in [(w.coll, stored), *extra]:
                    state[(c, d["id"])] = (seq, orjson.dumps(d))
                accepted.append((seq, w))
            await conn.execute(
                "INSERT INTO fc_changes (seq, type, coll, id, event, record, chain) SELECT * FROM "
                "unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::bytea[])",
                [list(col) for col in zip(*changes, strict=True)])
            await conn.execute(
                "UPDATE fc_state s SET seq = k.seq, doc = k.doc "
                "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bytea[]) AS k(coll, id, seq, doc) "
                "WHERE s.coll = k.coll AND s.id = k.id",
                ([c for c, _ in state], [i for _, i in state], [s for s, _ in state.values()],
                 [d for _, d in state.values()]))
            await conn.execute("UPDATE fc_counter SET hash = %s WHERE id = 1", (prev,))
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))
        return accepted, conflicts

    async def _refuse_after_catching_up(self, conflicts: list[_Write]) -> None:
        """WriteConflict for writes that lost a race, once the view holds what beat them (as the protocol says),
        so a caller of append_nowait (the escalation scheduler) re-reads the newer version, not its own old one."""
        try:
            with contextlib.suppress(Exception):  # closing, or the database went away: refuse them all the same
                await self.catch_up()
        finally:
            for w in conflicts:
                if not w.fut.done():
                    w.fut.set_exception(WriteConflict(f"{w.coll}/{w.doc['id']} changed on another worker"))

    async def _claim_unique(self, conn: AsyncConnection[Any], w: _Write) -> bool:
        """Take the write's unique keys (a callsign) for its item, or roll back to before trying."""
        try:
            async with conn.transaction():  # a savepoint
                for c, d in w.docs:
                    if not self._unique_fns.get(c):
                        continue
                    await conn.execute("DELETE FROM fc_unique WHERE coll = %s AND id = %s", (c, d["id"]))
                    for name, key in self.unique_keys(c, d):
                        cur = await conn.execute(
                            "INSERT INTO fc_unique VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                            (c, name, str(key), d["id"]))
                        if await cur.fetchone() is None:
                            raise WriteConflict(f"{c}.{name} {key!r} is taken")
        except WriteConflict:
            return False
        return True

    async def take_token(self, key: str, rate_per_s: float, burst: int) -> float | None:
        """A token from a bucket every worker shares (see StoreProtocol.take_token)."""
        if not self.db_ok or self._pool is None:
            raise DatabaseUnavailable()
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute("SELECT fc_take_token(%s, %s, %s)", (key, rate_per_s, float(burst)))
                row = await cur.fetchone()
        except DOWN as exc:
            self._set_down(exc)
            raise DatabaseUnavailable() from None
        assert row is not None
        return float(row[0])

    # ---- expired idempotency answers (prune.py) -----------------------------------------------------

    def connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection from the pool, for work beside the write path."""
        if self._pool is None or not self.db_ok:
            raise DatabaseUnavailable()
        return self._pool.connection()

    async def prune_expired(self) -> int:
        """Delete the expired idempotency answers from the table and this worker's view now; rows deleted."""
        return 0 if self._prune is None else await prune_expired(self, self._prune)

    def drop_expired(self, prune: Callable[[str, Doc], bool], keys: list[tuple[str, str]]) -> None:
        """Drop these documents from the view if they are still there and still expired."""
        for coll, doc_id in keys:
            doc = self.get(coll, doc_id)
            if doc is None or not prune(coll, doc):
                continue
            self._table(coll).drop_ids([doc_id])
            seq_log = self._logs.get((coll, doc.get("event") or ""))
            if seq_log is not None:
                seq_log.remove()  # its entry is stale now: the log compacts once most are

    async def _pruner(self) -> None:
        while True:
            try:
                await self.prune_expired()
                await prune_idle_buckets(self)
            except (*DOWN, DatabaseUnavailable):
                pass  # the next round will do it
            except Exception:
                log.exception("pruning expired idempotency answers failed")
            await asyncio.sleep(PRUNE_EVERY_S)

    # ---- following the changes table -----------------------------------------------------------

    async def catch_up(self) -> None:
        """Return once this worker has applied everything committed when it was called."""
        if self._pool is None:
            return
        try:
            async with self._pool.connection() as conn:
                row = await (await conn.execute("SELECT seq FROM fc_counter WHERE id = 1")).fetchone()
        except DOWN as exc:
            self._set_down(exc)
            return
        assert row is not None
        target = int(row[0])
        self.committed_seq = max(self.committed_seq, target)
        if target > self.last_seq and self._behind_since is None:
            self._behind_since = time.monotonic()
        self._doorbell.set()
        deadline = time.monotonic() + 10
        while self.last_seq < target and time.monotonic() < deadline and self.opened:
            await self._next_progress(deadline - time.monotonic())

    async def _follower(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), timeout=POLL_S)
            self._doorbell.clear()
            try:
                await self._pull()
            except DOWN as exc:
                self._set_down(exc)
                await asyncio.sleep(POLL_S)
            except Exception:
                log.exception("following the changes table failed")
                await asyncio.sleep(POLL_S)

    async def _pull(self) -> None:
        assert self._pool is not None
        while True:
            self._pulled_at = asyncio.get_running_loop().time()
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT seq, type, coll, record, chain FROM fc_changes WHERE seq > %s ORDER BY seq LIMIT %s",
                    (self.last_seq, PULL_MAX))
                rows = await cur.fetchall()
            self._set_up()
            for seq, type_, coll, record, chain in rows:
                if seq != self.last_seq + 1:  # never: the counter makes seqs gapless in commit order
                    raise StorageError(f"the changes table jumps from {self.last_seq} to {seq}")
                self._apply_record(int(seq), type_, coll, orjson.loads(record))
                self._head = (int(seq), bytes(chain))
            if rows:
                self._progress.set()
                self._progress = asyncio.Event()
            if len(rows) < PULL_MAX:
                if self.last_seq >= self.committed_seq:
                    self._behind_since = None  # caught up with everything known to be committed
                return

    def _apply_record(self, seq: int, type_: str, coll: str, record: Doc) -> None:
        data = record["data"]
        self._apply(coll, data)
        for c, d in record.get("aux", ()):
            self._apply(c, d)
        self.last_seq = seq
        self.committed_seq = max(self.committed_seq, seq)
        change = Change(seq, type_, coll, data)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a broken listener must not stop the feed
                log.exception("store listener failed")
        fut = self._waiters.pop(seq, None)
        if fut is not None and not fut.done():
            fut.set_result(seq)

    async def _listen(self) -> None:
        """One LISTEN connection: a doorbell only. The follower reads `seq > applied` whenever it rings."""
        while True:
            try:
                async with await self._connect(autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._doorbell.set()  # whatever was committed while we were not listening
                    loop = asyncio.get_running_loop()
                    async for note in conn.notifies():
                        seq = int(note.payload or 0)
                        self.committed_seq = max(self.committed_seq, seq)
                        if seq > self.last_seq and self._behind_since is None:
                            self._behind_since = time.monotonic()  # the feed lag runs from here
                        # Our own batches were pulled at once after their commit. Another worker's are pulled at
                        # once when this worker is idle, else at most every COALESCE_S, so that under load
                        # several batches come in one query (every worker applies every change: the cost per
                        # change of following is what grows with the number of workers).
                        if seq > self.last_seq and not self._ringing:
                            self._ringing = True
                            loop.call_at(max(loop.time(), self._pulled_at + COALESCE_S), self._ring)
            except psycopg.Error as exc:
                self._set_down(exc)
            await asyncio.sleep(POLL_S)

    def _ring(self) -> None:
        self._ringing = False
        self._doorbell.set()

    def _set_down(self, exc: BaseException) -> None:
        if self.db_ok:
            log.error("PostgreSQL unreachable, refusing writes until it returns: %s", one_line(exc))
        self.db_ok = False
        self.db_error = one_line(exc)

    def _set_up(self) -> None:
        if not self.db_ok:
            log.warning("PostgreSQL reachable again; taking writes")
        self.db_ok = True
        self.db_error = ""

    # ---- state for /healthz and /metrics -------------------------------------------------------

    def lag_s(self) -> float:
        return 0.0 if self._behind_since is None else time.monotonic() - self._behind_since

    async def redact(self, items: list[tuple[str, str, list[str] | None]]) -> int:
        """The retention purge: the erased versions as one change every worker applies, then history
        rewritten leaving each record's digest (store/pg/redact.py)."""
        from .redact import redact

        return await redact(self, items)

    def chain_head(self) -> tuple[int, str]:
        """(seq, hex chain hash) of the newest change this worker has applied; (0, 64 zeros) before the first."""
        return self._head[0], self._head[1].hex()

    def health(self) -> dict[str, Any]:
        lag = self.lag_s()
        out: dict[str, Any] = {"ok": self.db_ok and lag <= self.max_lag_s, "database": "ok" if self.db_ok
                               else "unreachable", "lag_s": round(lag, 3)}
        if self.db_error:
            out["error"] = self.db_error
        return out

    def metrics(self) -> dict[str, float]:
        return {"database_up": float(self.db_ok), "feed_lag_seconds": self.lag_s(),
                "feed_committed_seq": float(self.committed_seq), "pg_commits": float(self.commits),
                "pg_commit_seconds": self.commit_seconds, "pg_write_conflicts": float(self.conflicts)}
