"""The decision log (JESIP): what the control room decided, when, by whom and why.

Entries are never edited or erased. A mistake is ruled through by a later entry that `supersedes` it: the new
entry and the old one's `superseded_by` are written as one change (the old one's new version rides along as an
auxiliary document), so the log can never show one without the other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import Conflict, ValidationFailed
from ..idempotency import Slot
from ..model import Problems, check_unknown, new_id, now_str, require_object, text_value
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
DECISIONS = "decisions"


def validate_decision(body: Any) -> Doc:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("decision", "rationale", "options", "supersedes"), p)
    decision = text_value(data.get("decision"), p, "decision", max_chars=2000)
    rationale = text_value(data.get("rationale"), p, "rationale", max_chars=5000)
    options = text_value(data.get("options"), p, "options", max_chars=5000, required=False, min_chars=0)
    supersedes = data.get("supersedes")
    if supersedes is not None and (not isinstance(supersedes, str) or not 1 <= len(supersedes) <= 128):
        p.add("supersedes", "must be the id of an earlier decision of this event")
    p.raise_if_any()
    return {"decision": decision, "rationale": rationale, "options": options or None, "supersedes": supersedes}


async def add_decision(ctx: Services, event: Doc, viewer: Viewer, inp: Doc, slot: Slot | None = None) -> Doc:
    old = None
    if inp["supersedes"] is not None:
        old = ctx.store.get(DECISIONS, inp["supersedes"])
        if old is None or old.get("event") != event["tag"]:
            raise ValidationFailed.one("supersedes", "is not a decision of this event")
        if old.get("superseded_by"):
            raise Conflict(f"Decision {old['id']} is already superseded by {old['superseded_by']}; "
                           "supersede that one instead.")
    doc = {"id": new_id("dec"), "event": event["tag"], "at": now_str(),
           "by": {"id": viewer.id, "callsign": viewer.callsign}, "decision": inp["decision"],
           "rationale": inp["rationale"], "options": inp["options"], "supersedes": inp["supersedes"],
           "superseded_by": None}

    def render(stored: Doc) -> Doc:
        return ctx.view(DECISIONS, stored, viewer) or {}

    def aux(stored: Doc) -> list[tuple[str, Doc]]:
        extra = [] if old is None else [(DECISIONS, {**old, "superseded_by": stored["id"]})]
        return extra + (list(slot.aux(render)(stored)) if slot is not None else [])

    # No await between the check above and this append, which applies at once: two entries cannot both
    # supersede the same one.
    return render(await ctx.store.append("decision", DECISIONS, doc, aux=aux))
