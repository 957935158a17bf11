"""The updates the public may have seen, per event and per kind (and the rumours on the public board: see
`PublicRumours`), in seq order, so that public reads (the event
page, the feeds, `alerts.atom`, a list filtered by `kind`) walk only those, not every update of the event.

An update is logged here with every change it gets while it is `public` (retracted ones included, so a feed
can announce a withdrawal). Readers still take each item through visibility: this only narrows the candidates.
Like the store's own per-event logs, an entry whose item has changed since is skipped, and the logs compact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..rumours.lifecycle import has_published_verdict
from ..store.protocol import StoreProtocol
from ..store.seqlog import SeqLog

Doc = dict[str, Any]
UPDATES = "updates"
ALL = ""  # the log of every kind


class PublicUpdates:
    def __init__(self, store: StoreProtocol) -> None:
        self._store = store
        self._logs: dict[tuple[str, str], SeqLog] = {}
        self._version: dict[str, int] = {}
        store.on_apply(self._apply, {UPDATES})

    def _apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if new.get("visibility") != "public":
            return
        # On the path of every load of a million updates: SeqLog.append inlined, the two keys built once.
        event = new.get("event") or ""
        seq, item_id = new["seq"], new["id"]
        replaced = old is not None and old.get("visibility") == "public"
        logs = self._logs
        for key in ((event, ALL), (event, new.get("kind") or "info")):
            log_ = logs.get(key)
            if log_ is None:
                log_ = logs[key] = SeqLog()
            log_.seqs.append(seq)
            log_.ids.append(item_id)
            if not replaced:
                log_.live += 1
            elif not seq & 1023 and log_.needs_compaction():
                log_.compact(self._current_seq)
        self._version[event] = seq

    def _current_seq(self, item_id: str) -> int | None:
        doc = self._store.get(UPDATES, item_id)
        return None if doc is None else doc["seq"]

    def size(self, event: str, kind: str | None = None) -> int:
        """An upper bound of how many items `newest_first(event, kind)` yields (its log's length)."""
        log_ = self._logs.get((event, kind or ALL))
        return 0 if log_ is None else len(log_.seqs)

    def version(self, event: str) -> int:
        """The seq of the event's newest change to a public update: what public renderings depend on."""
        return self._version.get(event, 0)

    def newest_first(self, event: str, kind: str | None = None, before: int | None = None) -> Iterator[Doc]:
        log_ = self._logs.get((event, kind or ALL))
        if log_ is None:
            return iter(())
        return self._docs(log_.newest_first(self._current_seq, before))

    def oldest_first(self, event: str, kind: str | None = None, since: int = 0) -> Iterator[Doc]:
        log_ = self._logs.get((event, kind or ALL))
        if log_ is None:
            return iter(())
        return self._docs(log_.oldest_first(self._current_seq, since))

    def _docs(self, ids: Iterator[str]) -> Iterator[Doc]:
        for item_id in ids:
            doc = self._store.get(UPDATES, item_id)
            if doc is not None:
                yield doc


RUMOURS = "rumours"


class PublicRumours:
    """The rumours on an event's public board (a published verdict: `lifecycle.has_published_verdict`), in seq
    order, so that the board, the rumours page, the event page's verdicts and the public rumour list walk only
    those, not every rumour of the event (issue 15 item 7: an event of 5,000 rumours with 20 answered).

    A rumour is logged with each change it gets while it has a published verdict; one that leaves the board is
    skipped from then on (its entry is stale) until a change puts it back. Readers still take each rumour
    through visibility (which also asks that a rebuttal's update be public): this only narrows the candidates."""

    def __init__(self, store: StoreProtocol) -> None:
        self._store = store
        self._logs: dict[str, SeqLog] = {}
        store.on_apply(self._apply, {RUMOURS})

    def _apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        was = old is not None and has_published_verdict(old)
        if not has_published_verdict(new):
            if was:
                log_ = self._logs.get(old.get("event") or "")  # type: ignore[union-attr]
                if log_ is not None:
                    log_.remove()  # off the board: its entry is stale now
            return
        event = new.get("event") or ""
        log_ = self._logs.get(event)
        if log_ is None:
            log_ = self._logs[event] = SeqLog()
        log_.append(new["seq"], new["id"], replaced=was)
        if was and not new["seq"] & 1023 and log_.needs_compaction():
            log_.compact(self._current_seq)

    def _current_seq(self, item_id: str) -> int | None:
        doc = self._store.get(RUMOURS, item_id)
        return None if doc is None or not has_published_verdict(doc) else doc["seq"]

    def newest_first(self, event: str, before: int | None = None) -> Iterator[Doc]:
        log_ = self._logs.get(event)
        if log_ is None:
            return iter(())
        return self._docs(log_.newest_first(self._current_seq, before))

    def oldest_first(self, event: str, since: int = 0) -> Iterator[Doc]:
        log_ = self._logs.get(event)
        if log_ is None:
            return iter(())
        return self._docs(log_.oldest_first(self._current_seq, since))

    def _docs(self, ids: Iterator[str]) -> Iterator[Doc]:
        for item_id in ids:
            doc = self._store.get(RUMOURS, item_id)
            if doc is not None:
                yield doc
