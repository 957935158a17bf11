"""The one place that decides what a viewer may see.

`view(coll, item, viewer, lookup)` returns the item as that viewer may see it, or None. Every read
(lists, single items, the map, the stream, pages, feeds, media) goes through it; no handler decides
visibility on its own. `viewer` is None for the public. `lookup(coll, id)` lets a rule consult a
referenced item (is the update this photo belongs to public?).

Keys that start with "_" are internal bookkeeping and are never shown to anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .rumours.lifecycle import has_published_verdict

ROLE_RANK = {"officer": 1, "control": 2, "admin": 3}

Item = dict[str, Any]


class Resolver(Protocol):
    """What a rule may consult about other items."""

    def get(self, coll: str, item_id: str) -> Item | None: ...

    def photo_updates(self, photo_id: str) -> Iterable[Item]: ...


class _NoResolver:
    def get(self, coll: str, item_id: str) -> Item | None:
        return None

    def photo_updates(self, photo_id: str) -> Iterable[Item]:
        return ()


NO_RESOLVER: Resolver = _NoResolver()
Lookup = Resolver


@dataclass(frozen=True, slots=True)
class Viewer:
    id: str
    callsign: str
    role: str
    name: str = ""

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def is_public(viewer: Viewer | None) -> bool:
    return viewer is None


def _is_control(viewer: Viewer | None) -> bool:
    return viewer is not None and viewer.at_least("control")


def _clean(item: Item, drop: tuple[str, ...] = ()) -> Item:
    return {k: v for k, v in item.items() if not k.startswith("_") and k not in drop}


def update_publicly_visible(update: Item | None) -> bool:
    return update is not None and update.get("visibility") == "public" and update.get("status") == "active"


def public_update_location(update: Item) -> Item | None:
    """The location of a public update that the public may see: only one the device sent.

    A location taken from a photo's EXIF GPS (`source: exif`) is where the camera was, which the officer
    never chose to publish (API.md, *changed*): officers and control see it; the public sees `null`, and the
    update is on no public map, page, feed or stream, and matches no public `bbox`."""
    location: Item | None = update.get("location")
    if location is None or location.get("source") == "exif":
        return None
    return location


def location_seen_by(coll: str, item: Item, viewer: Viewer | None) -> Item | None:
    """The location of `item` as `viewer` sees it: what a filter on place (`bbox`) must test, so that a
    filter never answers for a location the viewer may not see."""
    if viewer is None and coll == "updates":
        return public_update_location(item)
    location: Item | None = item.get("location")
    return location


def _update(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is None:
        if not update_publicly_visible(item):
            return None
        out = _clean(item)
        out["location"] = public_update_location(item)
        # An update's zones are those round its location: from an EXIF location they would say where the
        # camera was as surely as the coordinates.
        from_exif = out["location"] is None and item.get("location") is not None
        zones = () if from_exif else item.get("zones", ())
        out["zones"] = [_clean(z, ("visibility",)) for z in zones if z.get("visibility") == "public"]
        out["photos"] = [_clean(ph) for ph in item.get("photos", ())]
        reply_to = item.get("reply_to")
        if reply_to is not None and not update_publicly_visible(lookup.get("updates", reply_to)):
            out["reply_to"] = None  # the public must not learn that an internal update exists
        return out
    if item.get("status") == "retracted" and not _is_control(viewer) and item["author"]["id"] != viewer.id:
        return None
    out = _clean(item)
    out["zones"] = [_clean(z, ("visibility",)) for z in item.get("zones", ())]
    if item.get("photos") and _is_control(viewer):
        # Control sees each photo's original (hash, size, type): the photo JSON as control sees it.
        out["photos"] = [_with_original(ph, lookup) for ph in item["photos"]]
    return out


def _with_original(photo: Item, lookup: Lookup) -> Item:
    original = (lookup.get("photos", photo["id"]) or {}).get("original")
    return {**photo, "original": original} if original else photo


def _photo(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is not None:
        # The original's hash and size are control's business: the original itself is evidence.
        return _clean(item) if _is_control(viewer) else _clean(item, ("original",))
    if any(update_publicly_visible(u) for u in lookup.photo_updates(item["id"])):
        return {k: item[k] for k in ("id", "url", "thumb_url", "width", "height", "content_type") if k in item}
    return None


def _rumour(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is not None:
        return staff_rumour(item, lookup.get("answers", item["id"]))
    if not has_published_verdict(item):
        return None
    out = _clean(item, ("sources", "location"))
    out["history"] = [_clean(h, ("by",)) for h in item.get("history", ())]
    out["rebuttals"] = [
        _clean(r, ("by",)) for r in item.get("rebuttals", ()) if update_publicly_visible(lookup.get("updates", r["update_id"]))
    ]
    # A verdict whose evidence is no longer public is not published, whatever the stored status says.
    return out if out["rebuttals"] else None


def staff_rumour(item: Item, answers: Item | None) -> Item:
    """A rumour as officers and control see it: with its `pending_answer` (when one waits) and, in `history`, what
    was done with proposed answers (approved, rejected; with `by`).

    Pending answers and their log live in their own collection ("answers", one document per rumour, keyed by
    the rumour's id), never in the rumour: proposing or rejecting an answer does not change the stored
    rumour, so its public copy, its seq, its ETag and the public stream are exactly as they were. The public
    rule (`_rumour`) never consults that collection."""
    out = _clean(item)
    if answers is None:
        return out
    pending = answers.get("pending")
    if pending is not None:
        out["pending_answer"] = _clean(pending)
    log = answers.get("log") or ()
    if log:
        out["history"] = sorted([*out.get("history", ()), *(_clean(entry) for entry in log)],
                                key=lambda entry: entry["at"])
    return out


def _answers(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    """A change to a rumour's pending answer reaches staff as the rumour, never the public."""
    if viewer is None:
        return None
    rumour = lookup.get("rumours", item["id"])
    return None if rumour is None else staff_rumour(rumour, item)


def _report(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is None:
        return None
    if not _is_control(viewer):
        return _clean(item, ("contact",))
    out = _clean(item)
    # The answers mailed to this report's contact, one per rumour it was counted for (keyed "<report>:<rumour>").
    replies = []
    for rumour_id in item.get("counted_for", ()):
        mail = lookup.get("mail", f"{item['id']}:{rumour_id}")
        if mail is not None:
            reply = {"rumour_id": rumour_id, "status": mail["status"], "at": mail["at"]}
            if mail.get("error"):
                reply["error"] = mail["error"]
            replies.append(reply)
    out["replies"] = replies
    out["reply"] = None if not replies else {k: v for k, v in replies[-1].items() if k != "rumour_id"}
    return out


def _zone(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if item.get("deleted"):  # kept as a tombstone so the stream and `since` syncs can announce the deletion
        return None
    if viewer is None and item.get("visibility") != "public":
        return None
    return _clean(item)


def _position(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    # Officers may ask who is near them (API: /officers/nearby); the public never sees a position. One erased
    # by a retention purge (Store.redact) has no location left and is seen by no one.
    return None if viewer is None or "location" not in item else _clean(item)


def _track(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    # An officer's track (API: at GET /officers, control only); one erased by a purge is seen by no one.
    return None if viewer is None or not viewer.at_least("control") or "points" not in item else _clean(item)


def _alert(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is None:
        return None
    if _is_control(viewer):
        return _clean(item)
    if any(r["id"] == viewer.id for r in item.get("recipients", ())):
        out = _clean(item, ("acks",))
        # A recipient sees who else was alerted, but not who answered or was reported overdue: that is for
        # control. Their own entry keeps their `acked_at`, so a handset can tell it has acknowledged.
        out["recipients"] = [{k: v for k, v in r.items() if k not in _CONTROL_ONLY_RECIPIENT
                              and (k != "acked_at" or r["id"] == viewer.id)} for r in item["recipients"]]
        return out
    return None


_CONTROL_ONLY_RECIPIENT = frozenset({"overdue", "overdue_at"})


def _push_subscription(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    # Its owner's alone; the keys stay on the server (the handset has them), as does an ended one.
    if viewer is None or item.get("ended") or item["officer"]["id"] != viewer.id:
        return None
    return {k: item[k] for k in ("id", "endpoint", "created_at") if k in item}


def _user(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    if viewer is None or (viewer.id != item["id"] and not viewer.at_least("admin")):
        return None
    return {k: item[k] for k in ("id", "name", "callsign", "role") if k in item}


def _event(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    return _clean(item, ("id",))  # an event is named by its tag; the store's id is the same string


def _decision(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    return _clean(item) if _is_control(viewer) else None


def _audit(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    return _clean(item) if viewer is not None and viewer.at_least("admin") else None


def _never(item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    return None


RULES: dict[str, Callable[[Item, Viewer | None, Lookup], Item | None]] = {
    "events": _event,
    "updates": _update,
    "photos": _photo,
    "rumours": _rumour,
    "answers": _answers,
    "reports": _report,
    "zones": _zone,
    "positions": _position,
    "tracks": _track,
    "alerts": _alert,
    "users": _user,
    "push_subscriptions": _push_subscription,
    "decisions": _decision,
    "audit": _audit,
}


def view(coll: str, item: Item | None, viewer: Viewer | None, lookup: Lookup = NO_RESOLVER) -> Item | None:
    """The item as `viewer` may see it, or None. Unknown collections are visible to nobody."""
    if item is None:
        return None
    return RULES.get(coll, _never)(item, viewer, lookup)


# ---- the live stream ------------------------------------------------------------------------------

# Stream-only narrowing on top of view(): positions go to the control room's map, not to every handset;
# an `alert-overdue` report is for control, whoever else may see the alert.
STREAM_MIN_ROLE = {"positions": "control", "decisions": "control"}
STREAM_TYPE_MIN_ROLE = {"alert-overdue": "control"}


def stream_view(coll: str, item: Item, viewer: Viewer | None, lookup: Lookup = NO_RESOLVER,
                change_type: str = "") -> Item | None:
    min_role = STREAM_MIN_ROLE.get(coll) or STREAM_TYPE_MIN_ROLE.get(change_type)
    if min_role is not None and (viewer is None or not viewer.at_least(min_role)):
        return None
    seen = view(coll, item, viewer, lookup)
    if seen is not None and _out_of_sight_since(coll, item, viewer, lookup):
        return None
    return seen if seen is not None else _removal(coll, item, viewer, lookup)


def _out_of_sight_since(coll: str, item: Item, viewer: Viewer | None, lookup: Lookup) -> bool:
    """A change replayed after its item has left the viewer's sight (an update retracted, a zone deleted, a
    verdict withdrawn) does not show the old content again: the stream's replay of `since=0` must not be a
    way to read what has been taken down. The viewer gets the removal when its own change comes."""
    current = lookup.get(coll, item["id"]) if "id" in item else None
    if current is None or current.get("seq") == item.get("seq"):
        return False
    return view(coll, current, viewer, lookup) is None


def _removal(coll: str, item: Item, viewer: Viewer | None, lookup: Lookup) -> Item | None:
    """A retraction or deletion is news to everyone who could see the item before it: they get a tombstone
    (its id, never its content), so that a page showing it can take it down (`update-retracted`,
    `zone-deleted`). Whoever could not see the item learns nothing."""
    if coll == "updates" and item.get("status") == "retracted":
        if view(coll, {**item, "status": "active"}, viewer, lookup) is not None:
            return {"id": item["id"], "event": item.get("event"), "seq": item.get("seq"), "status": "retracted"}
    elif coll == "zones" and item.get("deleted"):
        if view(coll, {**item, "deleted": False}, viewer, lookup) is not None:
            return {"id": item["id"], "event": item.get("event"), "seq": item.get("seq"), "deleted": True}
    elif coll == "rumours" and viewer is None and item.get("_answered"):
        # Off the public board again (its rebuttal retracted, or the answer withdrawn by control): a rumour
        # that was once answered in public (`_answered`, set with its first rebuttal) is taken down from pages.
        return {"id": item["id"], "event": item.get("event"), "seq": item.get("seq"), "withdrawn": True}
    return None


def public_map_location(coll: str, item: Item, lookup: Lookup = NO_RESOLVER) -> Item | None:
    """Where the public may see this item on a map, or None: the location in its public view.

    The map keeps an index of what the public may see; this is the rule it asks. Updates take a cheap path
    (their public view keeps the stored location as it is) because the index is built over every update.
    """
    if coll == "updates":
        return public_update_location(item) if update_publicly_visible(item) else None
    seen = view(coll, item, None, lookup)
    return None if seen is None else seen.get("location")


def cap_cancellation(item: Item) -> Item | None:
    """What the public may know of a public warning since retracted, so that its CAP URL can answer a
    `Cancel` and the alerts index can list it (API.md, *new*): which alert it was and when it was sent and
    withdrawn, nothing of its content. None for anything else (an internal warning was never published, so
    there is nothing to cancel and the public must not learn it existed)."""
    if item.get("kind") != "warning" or item.get("visibility") != "public" or item.get("status") != "retracted":
        return None
    out: Item = {k: item[k] for k in ("id", "event", "seq", "kind", "visibility", "status", "received_at",
                                      "retracted_at") if k in item}
    return out


def audience_key(coll: str, item: Item, viewer: Viewer | None, current: Item | None = None) -> Hashable:
    """Viewers with equal keys see the same `stream_view` of this item, so it is serialised once for them.
    `current` is the item's newest stored version: once the item has changed (an update retracted), officers'
    views of the old change differ (its author still sees it, others do not), so each officer has their own."""
    if viewer is None:
        return "public"
    if viewer.at_least("control"):
        return "control"
    if coll == "alerts" or (coll == "updates" and item.get("status") == "retracted"):
        return ("officer", viewer.id)
    if current is not None and current.get("seq") != item.get("seq"):
        return ("officer", viewer.id)
    return "officer"
