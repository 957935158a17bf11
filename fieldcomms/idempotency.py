"""Idempotency-Key: a retried POST from a bad mobile link is stored once.

The first response (status and body) is stored in the same journal record as the item it created, so a
crash can never keep one without the other. A repeat with the same key by the same caller gets that
response back; the same key with a different body is 422. A repeat that arrives while the first is still
in flight waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import ValidationFailed, WriteConflict
from .store import StoreProtocol

HEADER = "Idempotency-Key"
COLL = "idempotency"

Doc = dict[str, Any]


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Slot:
    """Handed to a creating handler: `aux(render, status)` goes to Store.append so the stored response is
    written atomically with the item."""

    record_id: str
    fingerprint: str
    prev_seq: int | None = None  # an expired record being replaced: the version it replaces (compare-and-set)

    def aux(self, render: Callable[[Doc], Doc], status: int = 201) -> Callable[[Doc], Iterable[tuple[str, Doc]]]:
        def records(stored: Doc) -> Iterable[tuple[str, Doc]]:
            record = {"id": self.record_id, "fingerprint": self.fingerprint, "status": status,
                      "body": render(stored), "at": time.time()}
            if self.prev_seq is not None:
                record["seq"] = self.prev_seq
            return [(COLL, record)]

        return records


class Idempotency:
    def __init__(self, store: StoreProtocol, ttl_hours: float) -> None:
        self.store = store
        self.ttl_s = max(ttl_hours, 24.0) * 3600
        self._inflight: dict[str, asyncio.Future[None]] = {}

    def expired(self, coll: str, doc: Doc) -> bool:
        return coll == COLL and doc["at"] < time.time() - self.ttl_s

    async def run(
        self,
        caller: str,
        key: str | None,
        fp: str,
        create: Callable[[Slot | None], Awaitable[tuple[int, Doc]]],
    ) -> tuple[int, Doc]:
        if key is None:
            return await create(None)
        record_id = hashlib.sha256(f"{caller}\x00{key}".encode()).hexdigest()[:40]
        while (pending := self._inflight.get(record_id)) is not None:
            await asyncio.shield(pending)
        stored = self.store.get(COLL, record_id)
        if stored is not None and not self.expired(COLL, stored):
            if stored["fingerprint"] != fp:
                raise ValidationFailed.one(HEADER, "was already used with a different request body")
            return stored["status"], stored["body"]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[record_id] = done
        try:
            return await create(Slot(record_id, fp, None if stored is None else stored["seq"]))
        except WriteConflict:
            # Another worker took the same key first (PostgreSQL): its answer is ours; the store has caught up.
            stored = self.store.get(COLL, record_id)
            if stored is None:
                raise
            if stored["fingerprint"] != fp:
                raise ValidationFailed.one(HEADER, "was already used with a different request body") from None
            return stored["status"], stored["body"]
        finally:
            del self._inflight[record_id]
            done.set_result(None)
