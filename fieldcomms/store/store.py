"""The durable store: journal + snapshots on disk, TinyDB view + indexes in memory.

Write path (all on the event loop except the disk work):
  append() assigns the next seq, applies the change to the view at once (so checks made by later
  requests see it: a tag taken, an idempotency key used), hands the encoded line to the journal
  thread, and returns only once that line is fsynced. Listeners (the live broker) hear of a change
  only once it is durable, in seq order. If the disk fails, the store refuses every later write.
  Each line carries the change's chain hash (chain.py), computed here on the loop, where seq order is
  given: two SHA-256 over a few hundred bytes, about a microsecond.

History: snapshots bound the start-up time (a start reads the newest snapshot and the journal after it)
but delete nothing; closed segments are compressed and kept, so `fieldcomms check` can verify the chain
from the first change. Only `redact` (the retention purge) rewrites history, leaving digests behind.

Nothing outside this package imports TinyDB: callers use the methods below.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import DataDirLocked, StorageError
from .chain import GENESIS
from .journal import (
    JournalWriter,
    RecoveryReport,
    compress_segment,
    encode_change,
    is_compressed,
    list_segments,
    read_lines,
)
from .memory import ApplyHook, Change, Doc, Listener, MemoryView
from .redact import redact_doc, redact_segments, remove_leftovers, targets_of
from .salvage import SALVAGE, lost_seqs
from .snapshot import SNAPSHOT, read_snapshot, write_snapshot

__all__ = ["SNAPSHOT", "ApplyHook", "Change", "DataDirLock", "Doc", "Listener", "Store"]

log = logging.getLogger(__name__)

CLOSE_SNAPSHOT_MAX_DOCS = 100_000
LOCKFILE = "LOCK"



class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCKFILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"the data directory {self.path.parent} is in use by {holder}; "
                "stop that server first, or use another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"fieldcomms pid {os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class Store(MemoryView):
    """See the module docstring. Create, `await open()`, use, `await close()`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        snapshot_every: int = 200_000,
        prune: Callable[[str, Doc], bool] | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        self.snapshot_every = snapshot_every
        self._prune = prune  # (coll, doc) -> True to drop it at the next snapshot (expired idempotency keys)
        self.snapshot_seq = 0
        self._lock = DataDirLock(self.data_dir)
        self._writer: JournalWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, tuple[asyncio.Future[int], Change, bytes]] = {}
        self._chain = GENESIS  # the chain hash at last_seq
        self._durable_head: tuple[int, bytes] = (0, GENESIS)
        self._since_snapshot = 0
        self._snapshotting = False
        self._snapshot_task: asyncio.Task[None] | None = None
        self._redaction: asyncio.Task[int] | None = None
        self.recovery = RecoveryReport()
        self.fsync_seconds_total = 0.0
        self.fsync_count = 0
        self.opened = False
        self._failed: BaseException | None = None
        self._upto: int | None = None  # read-only loading stops after this seq
        self._repair = True  # truncate a torn journal tail when loading (never when reading beside a server)

    # ---- configuration (before open) ------------------------------------------------------------

    def set_prune(self, prune: Callable[[str, Doc], bool]) -> None:
        """prune(coll, doc) -> True drops the doc at the next snapshot (expired idempotency answers)."""
        self._prune = prune

    # ---- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            await asyncio.to_thread(self._load)
        except BaseException:
            self._lock.release()
            raise
        self._loop = asyncio.get_running_loop()
        self._writer = JournalWriter(self.data_dir, self.last_seq + 1, self._on_durable_thread, fsync=self.fsync)
        self.opened = True

    async def close(self, *, snapshot: bool = True) -> None:
        if not self.opened:
            return
        self.opened = False
        assert self._writer is not None
        if self._snapshot_task is not None:
            # A snapshot in flight still needs the writer (its rotation), and must not touch the files
            # once the lock is released.
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if self._redaction is not None:  # likewise a purge, even if the request that began it is gone
            await asyncio.gather(self._redaction, return_exceptions=True)
        await asyncio.to_thread(self._writer.stop)
        await asyncio.sleep(0)  # let the last durability callbacks run
        # A closing snapshot makes the next start quicker, but writing one costs about a second per 100,000
        # documents, and shutdown must finish within seconds: a large store leaves the journal tail (at most
        # `snapshot_every` changes since the periodic snapshot) for the next start to replay instead.
        small = sum(self._table(name).raw_len() for name in self.view.tables()) <= CLOSE_SNAPSHOT_MAX_DOCS
        if snapshot and small and self._failed is None and self._since_snapshot:
            await self._snapshot_now()
        self._lock.release()

    # ---- writes ---------------------------------------------------------------------------------

    async def append(
        self,
        type: str,
        coll: str,
        doc: Doc,
        *,
        aux: Callable[[Doc], Iterable[tuple[str, Doc]]] | None = None,
    ) -> Doc:
        """Store a new version of `doc` (which must carry "id") as one change; returns it with its seq.

        `aux(stored_doc)` may add documents written atomically with it (e.g. the idempotency record,
        which holds the response built from the stored doc)."""
        fut = self.append_nowait(type, coll, doc, aux=aux)
        await fut
        return self.get(coll, doc["id"]) or doc

    def append_nowait(
        self,
        type: str,
        coll: str,
        doc: Doc,
        *,
        aux: Callable[[Doc], Iterable[tuple[str, Doc]]] | None = None,
    ) -> asyncio.Future[int]:
        if not self.opened or self._writer is None or self._loop is None:
            raise StorageError("the store is not open")
        if self._failed is not None:
            raise StorageError(f"the journal failed: {self._failed!r}")
        for guard in self._guards:
            guard(self)
        seq = self.last_seq + 1
        stored = {**doc, "seq": seq}
        extra = [(c, {**d, "seq": seq}) for c, d in (aux(stored) if aux else ())]
        record: Doc = {"seq": seq, "type": type, "coll": coll, "data": stored}
        if extra:
            record["aux"] = extra
        line, chain = encode_change(record, self._chain)  # before applying: an unencodable doc changes nothing
        self._chain = chain
        self.last_seq = seq
        self._apply(coll, stored)
        for c, d in extra:
            self._apply(c, d)
        fut: asyncio.Future[int] = self._loop.create_future()
        self._pending[seq] = (fut, Change(seq, type, coll, stored), chain)
        self._writer.submit(line, seq)
        self._since_snapshot += 1
        if self._since_snapshot >= self.snapshot_every and not self._snapshotting:
            self._snapshot_task = self._loop.create_task(self._snapshot_now())
        return fut

    def _on_durable_thread(self, seqs: list[int], seconds: float, error: BaseException | None) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_durable, seqs, seconds, error)

    def _on_durable(self, seqs: list[int], seconds: float, error: BaseException | None) -> None:
        if error is not None:
            self._failed = error
            log.critical("journal write failed; refusing further writes: %r", error)
        else:
            self.fsync_seconds_total += seconds
            self.fsync_count += 1
        for seq in seqs:
            fut, change, chain = self._pending.pop(seq)
            if error is not None:
                if not fut.done():
                    fut.set_exception(StorageError(f"the journal failed: {error!r}"))
                continue
            self._durable_head = (seq, chain)
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:  # a broken listener must not lose the acknowledgement
                    log.exception("store listener failed")
            if not fut.done():
                fut.set_result(seq)

    # ---- loading and snapshots ------------------------------------------------------------------

    def _load(self) -> None:
        # A million small dicts would trigger many full cyclic-GC passes over a heap that only grows; our
        # documents hold no cycles, so collect nothing while loading and then freeze what was loaded.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        self._loading = True
        self._hooks_by_coll.clear()
        try:
            self._load_files()
        finally:
            self._end_loading()
            if gc_was_enabled:
                gc.enable()
            if self.last_seq > 50_000:  # only worth it for a big store; freezing also pins unrelated garbage
                gc.freeze()

    def _load_files(self) -> None:
        snapshot = read_snapshot(self.data_dir)
        if snapshot is not None:
            seq, chain, entries = snapshot
            self.snapshot_seq = self.last_seq = seq
            self._chain = chain
            self.apply_loaded(entries)  # each item once, in seq order: the bulk path
            del entries
        segments = list_segments(self.data_dir)
        lost = lost_seqs(self.data_dir)
        for k, (_first, path) in enumerate(segments):
            if k + 1 < len(segments) and segments[k + 1][0] <= self.last_seq + 1:
                continue  # every change in it is in the snapshot: history, kept for `check`, not read here
            self.recovery.segments.append(path.name)
            last = k == len(segments) - 1
            for line in read_lines(path, self.recovery, repair=self._repair, last=last):
                record = line.record
                seq = record["seq"]
                if seq <= self.last_seq:
                    continue
                if self._upto is not None and seq > self._upto:
                    break
                if seq != self.last_seq + 1:
                    if not (seq > self.last_seq and lost.covers(self.last_seq + 1, seq - 1)):
                        raise StorageError(f"{path.name}: seq {seq} follows {self.last_seq}; the journal has a gap")
                    log.warning("changes %d to %d were lost to damage (see %s)", self.last_seq + 1, seq - 1, SALVAGE)
                self._apply(record["coll"], record["data"])
                for c, d in record.get("aux", ()):
                    self._apply(c, d)
                self.last_seq = seq
                self._chain = line.chain
                self._since_snapshot += 1
        self._durable_head = (self.last_seq, self._chain)
        if self.recovery.dropped_bytes:
            log.warning("dropped a torn journal tail of %d bytes (never acknowledged)", self.recovery.dropped_bytes)

    def chain_head(self) -> tuple[int, str]:
        """(seq, hex chain hash) of the newest durable change; (0, 64 zeros) before the first."""
        seq, chain = self._durable_head
        return seq, chain.hex()

    async def snapshot(self) -> None:
        """Write a snapshot now (also done every `snapshot_every` changes and on close). One in flight (a
        periodic one can take longer than the next 200,000 appends) is waited for first: it holds less."""
        await self._exclusive()
        try:
            await self._snapshot_held()
        finally:
            self._snapshotting = False

    async def _exclusive(self) -> None:
        """Wait for a snapshot or redaction in flight, then hold the files for this one."""
        while self._snapshotting:
            if self._snapshot_task is not None and not self._snapshot_task.done():
                await asyncio.gather(self._snapshot_task, return_exceptions=True)
            else:
                await asyncio.sleep(0.01)
        self._snapshotting = True

    async def _snapshot_now(self) -> None:
        if self._snapshotting:
            return
        self._snapshotting = True
        try:
            await self._snapshot_held()
        finally:
            self._snapshotting = False

    async def _rotate(self, next_seq: int) -> None:
        """Have the writer start a new segment at next_seq, so that every change before it is in a closed one."""
        assert self._writer is not None
        rotated = threading.Event()
        self._writer.rotate(next_seq, rotated.set)
        # A writer that fails never rotates; the changes up to next_seq - 1 may then not be durable.
        while not await asyncio.to_thread(rotated.wait, 0.5):
            if self._writer.failure is not None:
                raise StorageError(f"the journal failed before the rotation: {self._writer.failure!r}")

    async def _snapshot_held(self) -> None:
        # Decided now, not after the awaits below: a snapshot begun while open has appends after seq in the
        # new segment even if the store closes meanwhile.
        running = self.opened and self._writer is not None
        if self._failed is not None or (self._writer is not None and self._writer.failure is not None):
            raise StorageError("the journal failed; the view holds changes that never reached the disk")
        seq, chain = self.last_seq, self._chain
        now = time.time()
        tables: dict[str, list[Doc]] = {}
        dropped: dict[str, list[str]] = {}
        for name in self.view.tables():
            kept = []
            for doc_id, doc in self._table(name).raw_items():
                if self._prune is not None and self._prune(name, doc):
                    dropped.setdefault(name, []).append(doc_id)
                else:
                    kept.append(doc)
            tables[name] = kept
        for name, ids in dropped.items():
            self._table(name).drop_ids(ids)
        self._since_snapshot = 0
        if running:
            await self._rotate(seq + 1)
        await asyncio.to_thread(self._write_snapshot, seq, chain, tables)
        log.info("snapshot at seq %d written in %.2fs", seq, time.time() - now)

    def _write_snapshot(self, seq: int, chain: bytes, tables: dict[str, list[Doc]]) -> None:
        write_snapshot(self.data_dir, seq, chain, tables)
        self.snapshot_seq = seq
        # The history before the snapshot stays (the chain runs from the first change), compressed: every
        # segment but the newest is closed. The newest is where the writer appends (or will, on the next start).
        for _first, path in list_segments(self.data_dir)[:-1]:
            if not is_compressed(path):
                compress_segment(path)

    # ---- the retention purge ----------------------------------------------------------------------

    async def redact(self, items: list[tuple[str, str, list[str] | None]]) -> int:
        """Erase documents (fields None) or top-level fields of them from the whole history on disk and from
        the view, leaving each rewritten record's original digest so the chain still verifies (redact.py).
        Returns the number of journal records rewritten. Changes appended while this runs are kept as they
        are: a purge erases what was stored before it."""
        if not self.opened or self._writer is None:
            raise StorageError("the store is not open")
        targets = targets_of(items)
        if not targets:
            return 0
        # A task of its own, shielded: a purge that has begun rewriting files finishes (and close waits for
        # it) even if the caller is cancelled.
        self._redaction = asyncio.get_running_loop().create_task(self._redact(targets))
        return await asyncio.shield(self._redaction)

    async def _redact(self, targets: dict[tuple[str, str], frozenset[str] | None]) -> int:
        await self._exclusive()
        try:
            upto = self.last_seq
            await self._rotate(upto + 1)
            touched = await asyncio.to_thread(redact_segments, self.data_dir, targets, upto)
            for (coll, doc_id), fields in targets.items():
                doc = self.get(coll, doc_id)
                if doc is not None and doc["seq"] <= upto:
                    self._replace(coll, doc, redact_doc(doc, fields))
            # The snapshot holds current documents: a new one, written from the redacted view, replaces it.
            await self._snapshot_held()
            await asyncio.to_thread(remove_leftovers, self.data_dir)
        finally:
            self._snapshotting = False
        log.info("redacted %d document(s) in %d journal record(s)", len(targets), touched)
        return touched

    def _replace(self, coll: str, old: Doc, new: Doc) -> None:
        """Swap a document in place, same seq: its seq-log entry stands, its unique keys are redone. The
        apply hooks are not called (a purge is not a change to announce)."""
        self._raw[coll][new["id"]] = new
        self._tables[coll].clear_cache()
        for name, key in self._unique_fns.get(coll, ()):
            index = self._unique[(coll, name)]
            old_key = key(old)
            if old_key is not None and index.get(old_key) == new["id"]:
                del index[old_key]
            try:
                new_key = key(new)
            except (KeyError, TypeError):
                new_key = None
            if new_key is not None:
                index[new_key] = new["id"]

    async def take_token(self, key: str, rate_per_s: float, burst: int) -> float | None:
        return None  # one process: the in-process limiter is the deployment's

    def health(self) -> dict[str, Any]:
        return {"ok": True}  # a failed journal refuses writes but reads still answer: the process is alive

    def metrics(self) -> dict[str, float]:
        return {"store_disk_bytes": float(self.disk_bytes()), "journal_fsyncs": float(self.fsync_count),
                "journal_fsync_seconds": self.fsync_seconds_total}

    # ---- read-only loading (exports beside a running server) ------------------------------------------

    def load_read_only(self, upto: int | None = None) -> None:
        """Load snapshot + journal without the lock and without repairing anything, for a reader beside a
        running server (`fieldcomms export`). Changes after `upto` are left out. Nothing can be written."""
        self._upto = upto
        self._repair = False
        self._load()

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.glob("*") if p.is_file())
