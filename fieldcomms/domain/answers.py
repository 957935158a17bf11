"""A second pair of eyes before an answer goes public (API.md, "A second pair of eyes ...").

In an event with `answer_approval: "second-control"`, a rebuttal is proposed, not published: it waits as the
rumour's `pending_answer` until a control user other than the proposer approves it (then it is published exactly
as a rebuttal without approval is) or rejects it.

Where it is kept, and why: in the "answers" collection, one document per rumour under the rumour's id,
`{"id", "event", "pending": {...} | None, "log": [...]}`, never in the rumour itself. Proposing or rejecting an
answer therefore leaves the stored rumour as it was: its public copy, seq, ETag, page and ClaimReview cannot
change, and the public stream hears nothing. `visibility.staff_rumour` shows officers and control the rumour with
its pending answer and, in `history`, the log (`action`: `answer-approved`, `answer-rejected`, with `by`).

Rules chosen where API.md is silent (the OpenAPI descriptions say the same):
- One answer waits per rumour: proposing another while one waits is `409` (approve or reject it first).
- The second form's update is posted `internal` and made public on approval (a new version of the update,
  stored before the rumour is answered); a rejected one stays internal. An update retracted while its answer
  waits cannot be approved (`409`): the answer must be rejected.
- Approval needs the control role and someone other than the proposer (`403`); flagged checks need
  `"confirm_legal": true` (`422` naming `confirm_legal`). Rejection needs the control role, the proposer
  included (withdrawing one's own proposal), and a `reason` of 1 to 500 characters.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, Forbidden, ValidationFailed
from ..idempotency import Slot
from ..model import Problems, check_unknown, now_str, require_object, text_value, utc_now, validate_update
from ..rumours import lifecycle, urgency
from ..visibility import Viewer, staff_rumour
from .audit import record_access
from .rumours import (
    UPDATES,
    _actor,
    publish_answer,
    visible_rumour,
)
from .updates import build_update, store_update

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
ANSWERS = "answers"
REASON_MAX_CHARS = 500


def _answers_doc(ctx: Services, rumour: Doc) -> Doc:
    current = ctx.store.get(ANSWERS, rumour["id"])
    return copy.deepcopy(current) if current is not None else {
        "id": rumour["id"], "event": rumour["event"], "pending": None, "log": []}


async def _store_answers(ctx: Services, doc: Doc, rumour: Doc, viewer: Viewer, slot: Slot | None) -> Doc:
    """Store the answers document; the answer (and the idempotent reply) is the rumour as `viewer` sees it.
    Type "rumour": the stream announces the change to staff as the rumour's (visibility._answers)."""

    def shown(stored: Doc) -> Doc:
        # The staff view built from the new answers document (the store's copy is still the old one here).
        return staff_rumour(urgency.refresh(rumour, utc_now()), stored)

    stored = await ctx.store.append("rumour", ANSWERS, doc, aux=slot.aux(shown) if slot is not None else None)
    return shown(stored)


async def propose(ctx: Services, rumour: Doc, event: Doc, viewer: Viewer, inp: Doc, slot: Slot | None) -> Doc:
    """`POST /rumours/{id}/rebuttals` in an event that needs approval: the answer waits."""
    if (ctx.store.get(ANSWERS, rumour["id"]) or {}).get("pending"):
        raise Conflict("An answer to this rumour already waits for approval; approve or reject it first.")
    update_id = inp["update_id"]
    created = False
    if inp["update"] is not None:
        posted = validate_update({**inp["update"], "visibility": "internal"},
                                 max_text_chars=ctx.settings.max_text_chars,
                                 max_photos=ctx.settings.max_photos_per_update)
        posted_update = await store_update(ctx, build_update(ctx, event, viewer, posted), viewer, None)
        update_id, created = posted_update["id"], True
        rumour = visible_rumour(ctx, rumour["id"], viewer)
        if (ctx.store.get(ANSWERS, rumour["id"]) or {}).get("pending"):  # proposed meanwhile by someone else
            raise Conflict("An answer to this rumour already waits for approval; approve or reject it first.")
    update = ctx.store.get(UPDATES, update_id)
    problems = lifecycle.rebuttal_problems(rumour, inp["verdict"], update, needs_public=not created)
    if problems:
        raise ValidationFailed(problems)
    if any(r["update_id"] == update_id for r in rumour.get("rebuttals") or ()):
        raise Conflict(f"Update {update_id} already answers this rumour.")
    doc = _answers_doc(ctx, rumour)
    doc["pending"] = {"verdict": inp["verdict"], "update_id": update_id, "proposed_by": _actor(viewer),
                      "proposed_at": now_str(), "checks": inp["checks"], "_new_update": created}
    return await _store_answers(ctx, doc, rumour, viewer, slot)


def validate_approve(body: Any) -> bool:
    data = require_object(body) if body is not None else {}
    p = Problems()
    check_unknown(data, ("confirm_legal",), p)
    confirm = data.get("confirm_legal", False)
    if not isinstance(confirm, bool):
        p.add("confirm_legal", "must be true or false")
    p.raise_if_any()
    return bool(confirm)


def validate_reject(body: Any) -> str:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("reason",), p)
    reason = text_value(data.get("reason"), p, "reason", max_chars=REASON_MAX_CHARS)
    p.raise_if_any()
    return str(reason)


def _pending(ctx: Services, rumour: Doc) -> tuple[Doc, Doc]:
    doc = ctx.store.get(ANSWERS, rumour["id"])
    if doc is None or not doc.get("pending"):
        raise Conflict("No answer to this rumour waits for approval.")
    return copy.deepcopy(doc), copy.deepcopy(doc["pending"])


def _log_entry(action: str, status: str, viewer: Viewer, pending: Doc, reason: str | None = None) -> Doc:
    entry = {"at": now_str(), "status": status, "by": _actor(viewer), "action": action,
             "verdict": pending["verdict"], "update_id": pending["update_id"],
             "proposed_by": pending["proposed_by"]}
    if reason is not None:
        entry["reason"] = reason
    return entry


async def approve(ctx: Services, rumour_id: str, viewer: Viewer, confirm_legal: bool) -> Doc:
    rumour = visible_rumour(ctx, rumour_id, viewer)
    doc, pending = _pending(ctx, rumour)
    if pending["proposed_by"]["id"] == viewer.id:
        raise Forbidden("An answer is approved by a second control user, not by whoever proposed it.")
    flagged = [name for name, flag in pending.get("checks", {}).items() if flag]
    if flagged and not confirm_legal:
        raise ValidationFailed.one("confirm_legal", "must be true: the proposer flagged "
                                   + ", ".join(flagged) + "; confirm that the answer may lawfully be published")
    update = ctx.store.get(UPDATES, pending["update_id"])
    if update is None or update.get("status") != "active":
        raise Conflict(f"Update {pending['update_id']} was retracted; reject this answer instead.")
    seen_seq = doc["seq"]
    if update.get("visibility") != "public" and pending.get("_new_update"):
        update = await ctx.store.append("update", UPDATES, {**update, "visibility": "public"})
    current = ctx.store.get(ANSWERS, rumour_id)
    if current is None or current["seq"] != seen_seq:  # approved or rejected meanwhile by someone else
        raise Conflict("This answer was approved or rejected meanwhile.")
    rumour = visible_rumour(ctx, rumour_id, viewer)
    doc["pending"] = None
    doc["log"] = [*doc.get("log", []), _log_entry("answer-approved", pending["verdict"], viewer, pending)]
    published = await publish_answer(ctx, rumour, pending["verdict"], update, pending["proposed_by"], viewer, None,
                                     extra=[(ANSWERS, doc)], approved=True)
    await record_access(ctx, viewer, "answer.approve", ("rumour", rumour_id), rumour["event"],
                        f"verdict {pending['verdict']}, update {pending['update_id']}"
                        + (f"; legal checks confirmed: {', '.join(flagged)}" if flagged else ""))
    return published


async def reject(ctx: Services, rumour_id: str, viewer: Viewer, reason: str) -> Doc:
    rumour = visible_rumour(ctx, rumour_id, viewer)
    doc, pending = _pending(ctx, rumour)
    doc["pending"] = None
    doc["log"] = [*doc.get("log", []), _log_entry("answer-rejected", rumour["status"], viewer, pending, reason)]
    out = await _store_answers(ctx, doc, rumour, viewer, None)
    await record_access(ctx, viewer, "answer.reject", ("rumour", rumour_id), rumour["event"], reason)
    return out
