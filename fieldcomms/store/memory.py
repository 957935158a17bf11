"""The in-memory half of every store: TinyDB view, seq logs, unique indexes, apply hooks, listeners.

Both backends keep exactly this view and differ only in where a change becomes durable: the embedded
`Store` journals it to a local file, `PgStore` commits it to PostgreSQL and applies it when it comes back
from the changes table. Reads never leave memory in either.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tinydb import Query

from .seqlog import SeqLog
from .view import View, ViewTable

Doc = dict[str, Any]
ApplyHook = Callable[[str, Doc | None, Doc], None]
Listener = Callable[["Change"], None]


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    type: str  # what happened, named as the live stream names it: "update", "update-retracted", ...
    coll: str
    data: Doc


class MemoryView:
    """The queryable state of the deployment as of `last_seq`, and who hears of what changes."""

    def __init__(self) -> None:
        self.view = View()
        self.last_seq = 0
        self._logs: dict[tuple[str, str], SeqLog] = {}
        self._unique: dict[tuple[str, str], dict[Any, str]] = {}
        self._unique_fns: dict[str, list[tuple[str, Callable[[Doc], Any]]]] = {}
        self._apply_hooks: list[tuple[ApplyHook, frozenset[str] | None, bool]] = []
        self._hooks_by_coll: dict[str, list[ApplyHook]] = {}
        self._tables: dict[str, ViewTable] = {}
        self._raw: dict[str, dict[str, Doc]] = {}
        self._loading = False
        self._listeners: list[Listener] = []
        self._guards: list[Callable[[MemoryView], None]] = []

    # ---- configuration (before open) ------------------------------------------------------------

    def unique_index(self, coll: str, name: str, key: Callable[[Doc], Any]) -> None:
        """Keep {key(doc): id} for a collection; a None key is not indexed."""
        self._unique_fns.setdefault(coll, []).append((name, key))
        self._unique[(coll, name)] = {}

    def on_apply(self, hook: ApplyHook, colls: Iterable[str] | None = None, *, loading: bool = True) -> None:
        """Called on the loop for every applied put: hook(coll, old, new); only for the collections in
        `colls` if given (loading a million updates calls no hook that ignores them), and not while the
        store loads if `loading` is false (for an index that builds itself from the store when first used)."""
        self._apply_hooks.append((hook, None if colls is None else frozenset(colls), loading))
        self._hooks_by_coll.clear()

    def _hooks_for(self, coll: str) -> list[ApplyHook]:
        hooks = self._hooks_by_coll.get(coll)
        if hooks is None:
            hooks = self._hooks_by_coll[coll] = [
                hook for hook, colls, loading in self._apply_hooks
                if (colls is None or coll in colls) and (loading or not self._loading)]
        return hooks

    def add_guard(self, guard: Callable[[MemoryView], None]) -> None:
        """guard(store) runs at the start of every append and may raise to refuse it: nothing is written then.
        (The caller's revocation check: see auth.caller_still_valid.)"""
        self._guards.append(guard)

    def add_listener(self, listener: Listener) -> None:
        """Called once a change is durable, in seq order."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def unique_keys(self, coll: str, doc: Doc) -> list[tuple[str, Any]]:
        """(index name, key) of every unique index `doc` would take (PostgreSQL enforces them across workers)."""
        keys = []
        for name, key in self._unique_fns.get(coll, ()):
            value = key(doc)
            if value is not None:
                keys.append((name, value))
        return keys

    # ---- the in-memory view ---------------------------------------------------------------------

    def _table(self, coll: str) -> ViewTable:
        return self.view.table(coll)

    def _apply(self, coll: str, doc: Doc, *, new: bool = False) -> None:
        """Put a document in the view and its indexes. `new`: it is known not to be there (loading a
        snapshot, which holds each item once), which spares a lookup in a table of perhaps a million."""
        # The hot path of every write and of loading: plain dict work, no TinyDB calls but the cache reset.
        raw = self._raw.get(coll)
        if raw is None:
            table = self._table(coll)
            self._tables[coll] = table
            raw = self._raw[coll] = table._raw()
        doc_id = doc["id"]
        old = None if new else raw.get(doc_id)
        raw[doc_id] = doc
        if not self._loading:
            self._tables[coll].clear_cache()
        seq = doc["seq"]
        event = doc.get("event") or ""
        log_ = self._logs.get((coll, event))
        if log_ is None:
            log_ = self._logs[(coll, event)] = SeqLog()
        log_.seqs.append(seq)  # SeqLog.append, inlined: this runs for every document a load reads
        log_.ids.append(doc_id)
        if old is None:
            log_.live += 1
        elif not seq & 1023 and log_.needs_compaction():
            log_.compact(lambda i: self._current_seq(coll, i))
        for name, key in self._unique_fns.get(coll, ()):
            index = self._unique[(coll, name)]
            if old is not None:
                old_key = key(old)
                if old_key is not None and index.get(old_key) == doc_id:
                    del index[old_key]
            new_key = key(doc)
            if new_key is not None:
                index[new_key] = doc_id
        for hook in self._hooks_for(coll):
            hook(coll, old, doc)

    def _current_seq(self, coll: str, doc_id: str) -> int | None:
        raw = self._raw.get(coll)
        doc = None if raw is None else raw.get(doc_id)
        return None if doc is None else doc["seq"]

    # ---- reads ----------------------------------------------------------------------------------

    def get(self, coll: str, doc_id: str) -> Doc | None:
        """The current version. Treat it as read-only: build new dicts to change anything."""
        raw = self._raw.get(coll)  # the table's own dict (see _apply): no TinyDB call on this hot path
        return None if raw is None else raw.get(doc_id)

    def get_by(self, coll: str, index: str, key: Any) -> Doc | None:
        doc_id = self._unique[(coll, index)].get(key)
        return None if doc_id is None else self.get(coll, doc_id)

    def search(self, coll: str, cond: Callable[[Any], Any]) -> list[Doc]:
        """An ad hoc TinyDB query (`where("field") == x`); a full scan, so not for hot paths."""
        return [dict(d) for d in self._table(coll).search(cond)]  # type: ignore[arg-type]

    def all(self, coll: str) -> Iterator[Doc]:
        return (doc for _, doc in self._table(coll).raw_items())

    def count(self, coll: str) -> int:
        return self._table(coll).raw_len()

    def newest_first(self, coll: str, event: str = "", before: int | None = None) -> Iterator[Doc]:
        log_ = self._logs.get((coll, event))
        if log_ is None:
            return iter(())
        table = self._table(coll)
        return (table.raw_get(i) for i in log_.newest_first(lambda i: self._current_seq(coll, i), before))

    def oldest_first(self, coll: str, event: str = "", since: int = 0) -> Iterator[Doc]:
        log_ = self._logs.get((coll, event))
        if log_ is None:
            return iter(())
        table = self._table(coll)
        return (table.raw_get(i) for i in log_.oldest_first(lambda i: self._current_seq(coll, i), since))

    def event_changed_at_least(self, event: str, since: int, colls: Iterable[str]) -> int:
        """A lower bound of how many items of the event in `colls` changed after `since`, without walking them
        (a replay that would be too long is refused at once)."""
        wanted = frozenset(colls)
        return sum(log_.changed_after_at_least(since) for (coll, ev), log_ in self._logs.items()
                   if ev == event and coll in wanted)

    def event_changes_since(self, event: str, since: int, colls: Iterable[str] | None = None) -> Iterator[tuple[str, Doc]]:
        """(coll, current doc) of every item of the event whose latest change is after `since`, in seq order,
        of the collections `colls` only if given (a stream replay must not walk an event's track points: one
        document per position reported). Older versions were replaced, so a replay from here carries each
        item's newest state once."""
        wanted = None if colls is None else frozenset(colls)

        def changes(coll: str, log_: SeqLog) -> Iterator[tuple[int, str, str]]:
            for seq, doc_id in log_.changes_since(lambda i: self._current_seq(coll, i), since):
                yield seq, coll, doc_id

        merged = heapq.merge(*[changes(coll, log_) for (coll, ev), log_ in self._logs.items()
                               if ev == event and (wanted is None or coll in wanted)])
        for _seq, coll, doc_id in merged:
            yield coll, self._table(coll).raw_get(doc_id)

    def _end_loading(self) -> None:
        self._loading = False
        self._hooks_by_coll.clear()
        for table in self._tables.values():
            table.clear_cache()

    Query = Query
