"""Alerts from the control room to the officers near a place: who receives one, who joins a live one later,
acknowledgements, and who is reported overdue.

Recipients are the officers whose latest fresh position is within the radius when the alert is sent. With
`active_minutes` the alert stays live on its area: an officer whose newly reported fresh position falls inside
it becomes a recipient then (their entry carries `added_at`). With `ack_within_s`, a recipient who has not
acknowledged that long after becoming one is reported to control once (`escalation.py` decides when).
Every new recipient gets the alert on the stream (it is stored again with them in it) and as a push.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import Forbidden, NotFound
from ..geo import geodesic_m
from ..idempotency import Slot
from ..model import (
    Problems,
    check_unknown,
    format_time,
    location_value,
    new_id,
    now_str,
    number,
    require_object,
    text_value,
    utc_now,
)
from ..visibility import Viewer
from .alertbook import ALERTS, ack_deadlines, became_recipient
from .positions import RADIUS_MAX_M, is_stale, within

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
ACTIVE_MINUTES_MAX = 1440
ACK_WITHIN_S = (30, 3600)


def _whole(value: Any, p: Problems, field: str, lo: int, hi: int) -> int | None:
    n = number(value)
    if n is None or not n.is_integer() or not lo <= n <= hi:
        p.add(field, f"must be a whole number from {lo} to {hi}")
        return None
    return int(n)


def validate_alert(body: Any, max_text_chars: int) -> Doc:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("text", "location", "radius_m", "active_minutes", "ack_within_s"), p)
    text = text_value(data.get("text"), p, "text", max_chars=max_text_chars)
    if data.get("location") is None:
        p.add("location", "is required: {lat, lon}")
        location = None
    else:
        location = location_value(data.get("location"), p)
    radius = number(data.get("radius_m"))
    if radius is None or not 0 < radius <= RADIUS_MAX_M:
        p.add("radius_m", f"is required: metres, more than 0 and at most {RADIUS_MAX_M:g}")
    active = 0 if data.get("active_minutes") is None else _whole(
        data["active_minutes"], p, "active_minutes", 0, ACTIVE_MINUTES_MAX)
    ack_within = None if data.get("ack_within_s") is None else _whole(
        data["ack_within_s"], p, "ack_within_s", *ACK_WITHIN_S)
    p.raise_if_any()
    return {"text": text, "location": location, "radius_m": radius, "active_minutes": active,
            "ack_within_s": ack_within}


def build_alert(ctx: Services, event: Doc, viewer: Viewer, inp: Doc) -> Doc:
    loc = inp["location"]
    found = sorted(within(ctx, event["tag"], loc["lat"], loc["lon"], inp["radius_m"]),
                   key=lambda hit: (hit[0], hit[1]["officer"]["callsign"]))
    now = utc_now()
    doc = {"id": new_id("alert"), "event": event["tag"], "text": inp["text"], "location": loc,
           "radius_m": inp["radius_m"], "by": {"id": viewer.id, "callsign": viewer.callsign},
           "recipients": [dict(doc["officer"]) for _, doc in found], "acks": [], "created_at": format_time(now),
           "active_minutes": inp["active_minutes"]}
    if inp["active_minutes"]:
        doc["active_until"] = format_time(now + timedelta(minutes=inp["active_minutes"]))
    if inp["ack_within_s"] is not None:
        doc["ack_within_s"] = inp["ack_within_s"]
    return doc


def _push(ctx: Services, alert: Doc, officer_ids: list[str]) -> None:
    if officer_ids:
        ctx.push.alert_recipients(alert, officer_ids)


async def store_alert(ctx: Services, doc: Doc, viewer: Viewer, slot: Slot | None) -> Doc:
    def render(stored: Doc) -> Doc:
        return ctx.view(ALERTS, stored, viewer) or {}

    stored = await ctx.store.append("alert", ALERTS, doc, aux=slot.aux(render) if slot else None)
    _push(ctx, stored, [r["id"] for r in stored["recipients"]])  # once durable: a push never announces a lost alert
    return render(stored)


def visible_alert(ctx: Services, alert_id: str, viewer: Viewer | None) -> Doc:
    seen = ctx.visible(ALERTS, alert_id, viewer)
    if seen is None:
        raise NotFound(f"No alert {alert_id}.")
    return seen


async def acknowledge(ctx: Services, alert_id: str, viewer: Viewer) -> None:
    visible_alert(ctx, alert_id, viewer)  # 404 for an officer it was not sent to
    doc = ctx.store.get(ALERTS, alert_id)
    assert doc is not None
    if not any(r["id"] == viewer.id for r in doc["recipients"]):
        raise Forbidden("Only a recipient of the alert may acknowledge it.")
    if any(a["id"] == viewer.id for a in doc["acks"]):
        return  # acknowledging twice counts once
    now = now_str()
    ack = {"id": viewer.id, "callsign": viewer.callsign, "at": now}
    recipients = [{**r, "acked_at": now} if r["id"] == viewer.id else r for r in doc["recipients"]]
    await ctx.store.append("alert", ALERTS, {**doc, "recipients": recipients, "acks": [*doc["acks"], ack]})


async def position_reported(ctx: Services, position: Doc | None) -> None:
    """An officer's new latest position: they join every live alert of the event whose circle holds it."""
    if position is None:
        return
    now = utc_now()
    if is_stale(position, now.timestamp(), ctx.settings.stale_after_minutes * 60):
        return  # a late report from an offline queue says where the officer was, not where they are
    officer, loc = position["officer"], position["location"]
    joined = []
    for alert_id in ctx.alert_book.active(position["event"], now.timestamp()):
        doc = ctx.store.get(ALERTS, alert_id)
        if doc is None or any(r["id"] == officer["id"] for r in doc["recipients"]):
            continue
        alert_loc = doc["location"]
        if geodesic_m(alert_loc["lat"], alert_loc["lon"], loc["lat"], loc["lon"]) > doc["radius_m"]:
            continue
        # Read and appended with nothing awaited in between: two reports cannot add the officer twice.
        new = {**doc, "recipients": [*doc["recipients"],
                                     {"id": officer["id"], "callsign": officer["callsign"], "added_at": now_str()}]}
        joined.append((new, ctx.store.append_nowait("alert", ALERTS, new)))
    for new, durable in joined:
        await durable
        _push(ctx, new, [officer["id"]])


def overdue_now(alert: Doc, now: float) -> list[Doc]:
    """The recipients whose acknowledgement is due by `now` and who have not been reported yet."""
    return [r for deadline, r in ack_deadlines(alert) if deadline <= now]


def mark_overdue(alert: Doc, late: list[Doc], at: str) -> Doc:
    """The alert with these recipients reported overdue; `_overdue` names this report's batch for the stream."""
    ids = {r["id"] for r in late}
    recipients = [{**r, "overdue": True, "overdue_at": at} if r["id"] in ids else r for r in alert["recipients"]]
    return {**alert, "recipients": recipients, "_overdue": sorted(ids)}


def overdue_event(alert: Doc, seq: int) -> Doc:
    """The stream's `alert-overdue` data: who this report is about."""
    batch = set(alert.get("_overdue", ()))
    return {"id": alert["id"], "event": alert["event"], "seq": seq,
            "overdue": [{"id": r["id"], "callsign": r["callsign"]} for r in alert["recipients"] if r["id"] in batch]}


__all__ = ["ALERTS", "became_recipient", "validate_alert", "build_alert", "store_alert", "visible_alert",
           "acknowledge", "position_reported", "overdue_now", "mark_overdue", "overdue_event"]
