"""Services: what a request handler needs (settings, store, per-event indexes), built once per app.

It is also the `Resolver` that visibility rules consult about referenced items, and the place where
derived, rebuilt-on-start indexes live (photo -> updates that carry it, zones per event).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .config import Settings
from .store import Store
from .visibility import Item, Viewer, view

RetractHook = Callable[[Item, Viewer], Awaitable[None]]
ZonesFor = Callable[[str, float, float], list[dict[str, Any]]]


class Services:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._photo_updates: dict[str, set[str]] = defaultdict(set)
        self.after_retract: list[RetractHook] = []
        self.zones_for: ZonesFor = lambda event, lat, lon: []
        self.extensions: dict[str, Any] = {}  # later subsystems (broker, media, matcher) register here
        # Callers by token hash, for the requests to come; emptied whenever any user changes (added, edited,
        # revoked), so a revocation holds from the next request on.
        self.viewers: dict[str, Viewer] = {}
        store.on_apply(self._index_photos, {"updates"})
        store.on_apply(lambda coll, old, new: self.viewers.clear(), {"users"})
        store.unique_index("users", "token_hash", lambda d: None if d.get("revoked") else d.get("token_hash"))
        store.unique_index("users", "callsign", lambda d: None if d.get("revoked") else d["callsign"].lower())

    def _index_photos(self, coll: str, old: Item | None, new: Item) -> None:
        if coll != "updates":
            return
        for photo in (old or {}).get("photos", ()):
            self._photo_updates[photo["id"]].discard(new["id"])
        for photo in new.get("photos", ()):
            self._photo_updates[photo["id"]].add(new["id"])

    # Resolver
    def get(self, coll: str, item_id: str) -> Item | None:
        return self.store.get(coll, item_id)

    def photo_updates(self, photo_id: str) -> Iterable[Item]:
        for update_id in self._photo_updates.get(photo_id, ()):
            doc = self.store.get("updates", update_id)
            if doc is not None:
                yield doc

    def view(self, coll: str, item: Item | None, viewer: Viewer | None) -> Item | None:
        return view(coll, item, viewer, self)

    def visible(self, coll: str, item_id: str, viewer: Viewer | None) -> Item | None:
        return view(coll, self.store.get(coll, item_id), viewer, self)
