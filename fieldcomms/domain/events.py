from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import Conflict, NotFound
from ..evidence.retention import apply_retention
from ..idempotency import Slot
from ..model import now_str, utc_now, validate_event_create, validate_event_patch

if TYPE_CHECKING:
    from ..services import Services


def get_event(ctx: Services, tag: str) -> dict[str, Any]:
    event = ctx.store.get("events", tag.strip().lstrip("#").lower())
    if event is None:
        raise NotFound(f"No event #{tag}.")
    return event


def open_event(ctx: Services, tag: str) -> dict[str, Any]:
    """The event, if it still takes new items (updates, rumours, reports, positions)."""
    event = get_event(ctx, tag)
    if event["status"] == "closed":
        raise Conflict(f"Event #{event['tag']} is closed; it can be read but takes nothing new.")
    return event


async def create_event(ctx: Services, body: Any, slot: Slot | None = None) -> dict[str, Any]:
    """`slot` (from Idempotency.run) stores the 201 answer atomically with the event."""
    data = validate_event_create(body)
    if ctx.store.get("events", data["tag"]) is not None:
        raise Conflict(f"An event #{data['tag']} exists already.")
    doc = {"id": data["tag"], **data, "created_at": now_str()}
    doc["answer_approval"] = data.get("answer_approval") or ctx.settings.answer_approval
    doc = apply_retention(None, doc, ctx.settings.retention_days, utc_now(), explicit=data["retain_until"] is not None)

    def render(stored: dict[str, Any]) -> dict[str, Any]:
        return ctx.view("events", stored, None) or {}

    return await ctx.store.append("event", "events", doc, aux=slot.aux(render) if slot else None)


async def patch_event(ctx: Services, tag: str, body: Any) -> dict[str, Any]:
    event = get_event(ctx, tag)
    changes = validate_event_patch(body, event)
    if not changes or all(event.get(k) == v for k, v in changes.items()):
        return event
    new = apply_retention(event, {**event, **changes}, ctx.settings.retention_days, utc_now(),
                          explicit="retain_until" in changes)
    return await ctx.store.append("event", "events", new)
