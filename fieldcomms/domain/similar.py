"""Photos seen before (API.md "Photos from the public, and photos seen before"): which stored photos resemble a
photo, across every event of the deployment, and where each was seen. The fingerprints and their index are in
`fieldcomms.fingerprints`; this module only asks it and applies visibility to what it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
PHOTO_REF = ("id", "url", "thumb_url", "width", "height")


def seen_in(ctx: Services, photo_id: str, viewer: Viewer | None) -> list[Doc]:
    """The updates and reports that carry the photo and that `viewer` may see, earliest first."""
    places: list[tuple[str, Doc]] = []
    for update in ctx.photo_updates(photo_id):
        if ctx.view("updates", update, viewer) is not None:
            places.append((update.get("received_at") or "", {"type": "update", "id": update["id"],
                                                               "event": update["event"]}))
    for report in ctx.photo_reports(photo_id):
        if ctx.view("reports", report, viewer) is not None:
            places.append((report.get("received_at") or "", {"type": "report", "id": report["id"],
                                                               "event": report["event"]}))
    return [place for _, place in sorted(places, key=lambda p: (p[0], p[1]["id"]))]


def similar(ctx: Services, photo_id: str, viewer: Viewer, limit: int = 20) -> Doc:
    """`GET /photos/{id}/similar`: the most similar first (then the earliest seen)."""
    if ctx.visible("photos", photo_id, viewer) is None:
        raise NotFound("No such photo.")
    items = []
    for other_id, distance in ctx.fingerprints.search(photo_id, limit=limit):
        other = ctx.visible("photos", other_id, viewer)
        if other is None:
            continue
        items.append({"photo": {k: other.get(k) for k in PHOTO_REF}, "distance": distance,
                      "first_seen_at": other.get("uploaded_at"), "seen_in": seen_in(ctx, other_id, viewer)})
    return {"items": items}


def similar_to_report(ctx: Services, report: Doc, limit: int = 5) -> list[Doc]:
    """For officers reading a report: earlier photos (uploaded no later than the report arrived, in any event)
    that its photos resemble, closest first; `of` names the report's photo."""
    own = {p["id"] for p in report.get("photos", ())}
    received = report.get("received_at") or ""
    found: dict[str, Doc] = {}
    for photo_id in own:
        # The very same file sent again is the same photo (photos are stored by content hash): seen before
        # when an update or another report carries it, or an officer uploaded it (this report's own new
        # photos have no uploader and, until it is stored, no carrier).
        record = ctx.store.get("photos", photo_id)
        carried = any(r["id"] != report["id"] for r in ctx.photo_reports(photo_id)) or any(
            True for _ in ctx.photo_updates(photo_id))
        if record is not None and (carried or record.get("uploaded_by") is not None):
            found[photo_id] = {"photo_id": photo_id, "of": photo_id, "distance": 0,
                               "first_seen_at": record.get("uploaded_at")}
        for other_id, distance in ctx.fingerprints.search(photo_id, limit=limit * 2):
            other = ctx.store.get("photos", other_id)
            if other_id in own or other is None or (other.get("uploaded_at") or "") > received:  # later ones
                continue
            if other_id not in found or distance < found[other_id]["distance"]:
                found[other_id] = {"photo_id": other_id, "of": photo_id, "distance": distance,
                                   "first_seen_at": other.get("uploaded_at")}
    return sorted(found.values(), key=lambda f: (f["distance"], f["first_seen_at"] or ""))[:limit]
