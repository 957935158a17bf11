"""What the rest of fieldcomms may ask of a store: the one interface both backends satisfy.

`Store` (embedded: journal + snapshots in a data directory) and `PgStore` (PostgreSQL, many workers) both
implement it; handlers, domain code and the broker are written against this protocol only.

The one rule a caller must keep for the PostgreSQL backend to stay correct across workers: a new version of
an item is built from the version just read (`{**doc, ...}`), so it carries that version's `seq`. The
PostgreSQL store then writes it only if the item is still at that seq (compare-and-set); a document without
`seq` must be new. A lost race raises `WriteConflict`, after the view has caught up, so the caller (the HTTP
retry middleware) can simply run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

from .memory import ApplyHook, Doc, Listener

Aux = Callable[[Doc], Iterable[tuple[str, Doc]]]

# Set per HTTP request by the retry middleware: how many appends of this request have been stored. A request
# that lost a race before storing anything can run again as a whole; one that stored something cannot.
WRITES_DONE: ContextVar[list[int] | None] = ContextVar("fieldcomms_writes_done", default=None)


@runtime_checkable
class StoreProtocol(Protocol):
    last_seq: int
    opened: bool

    def unique_index(self, coll: str, name: str, key: Callable[[Doc], Any]) -> None: ...
    def set_prune(self, prune: Callable[[str, Doc], bool]) -> None: ...
    def on_apply(self, hook: ApplyHook, colls: Iterable[str] | None = None, *, loading: bool = True) -> None: ...
    def add_listener(self, listener: Listener) -> None: ...
    def remove_listener(self, listener: Listener) -> None: ...

    async def open(self) -> None: ...
    async def close(self, *, snapshot: bool = True) -> None: ...

    async def append(self, type: str, coll: str, doc: Doc, *, aux: Aux | None = None) -> Doc: ...
    def append_nowait(self, type: str, coll: str, doc: Doc, *, aux: Aux | None = None) -> asyncio.Future[int]: ...

    def get(self, coll: str, doc_id: str) -> Doc | None: ...
    def get_by(self, coll: str, index: str, key: Any) -> Doc | None: ...
    def search(self, coll: str, cond: Callable[[Any], Any]) -> list[Doc]: ...
    def all(self, coll: str) -> Iterator[Doc]: ...
    def count(self, coll: str) -> int: ...
    def newest_first(self, coll: str, event: str = "", before: int | None = None) -> Iterator[Doc]: ...
    def oldest_first(self, coll: str, event: str = "", since: int = 0) -> Iterator[Doc]: ...
    def event_changes_since(self, event: str, since: int) -> Iterator[tuple[str, Doc]]: ...

    async def take_token(self, key: str, rate_per_s: float, burst: int) -> float | None:
        """Spend a token from the bucket `key` shared by every worker of the deployment: 0.0, or the seconds until
        one is there. None where the store serves one process: the caller's in-process limiter decides."""
        ...

    async def redact(self, items: list[tuple[str, str, list[str] | None]]) -> int:
        """Erase (collection, id, fields or None for the whole document) from every copy the store keeps,
        leaving each record's digest so the chain still verifies; the number of records touched."""
        ...

    def chain_head(self) -> tuple[int, str]:
        """(seq, hex chain hash) of the newest durable change this process has; (0, 64 zeros) before the first."""
        ...

    def health(self) -> dict[str, Any]:
        """{"ok": bool, ...}: whether this store can take writes and its view is current (for /healthz)."""
        ...

    def metrics(self) -> dict[str, float]:
        """Backend figures for /metrics: {name: value}, names without the `fieldcomms_` prefix."""
        ...
