"""Rumours over the services: validation, the store, and the rules of `fieldcomms.rumours` (lifecycle, urgency,
matching, ClaimReview). Reports from the public are in `fieldcomms.domain.reports`.

Rules chosen where API.md is silent (the handlers' OpenAPI descriptions say the same):

- A closed event takes no new rumours, sightings, rebuttals or reports (409); control may still change a
  rumour's status, so that an answer can be withdrawn after the event.
- A sighting is either `{"report_id"}` alone or any of `text`, `url`, `location`, `seen_at`; a bare `{}` counts
  one more sighting, seen now. A report counts once per rumour (409 after) and must belong to the rumour's event.
  Counting it writes the rumour and the report's `counted_for` in one journal record.
- A rebuttal's `url` is the rebuttal update's place on the public event page: `{base_url}/events/{tag}#update-{id}`.
- A report keeps no client address: the address is only the rate limiter's key, held in memory.
- Rumour and report locations are returned with `"source": "device"`, like every location given by a client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import ANSWER_APPROVAL_MODES
from ..errors import Conflict, NotFound, ValidationFailed
from ..idempotency import Slot
from ..model import (
    Problems,
    check_unknown,
    location_value,
    new_id,
    require_object,
    text_value,
    time_value,
    utc_now,
    validate_update,
)
from ..rumours import claimreview, lifecycle, urgency
from ..visibility import Viewer
from . import replies
from .events import get_event, open_event
from .updates import build_update, store_update

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
Aux = Callable[[Doc], Iterable[tuple[str, Doc]]]

RUMOURS, REPORTS, UPDATES = "rumours", "reports", "updates"
URL_MAX_CHARS = 2000
SOURCE_FIELDS = ("text", "url", "seen_at", "location")
SECOND_CONTROL = ANSWER_APPROVAL_MODES[1]
CHECKS = ("names_person", "mentions_minor", "active_proceedings")


# ---- validation -------------------------------------------------------------------------------------------


def url_value(value: Any, p: Problems, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= URL_MAX_CHARS:
        p.add(field, f"must be a URL string of at most {URL_MAX_CHARS} characters")
        return None
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(
        c.isspace() or ord(c) < 0x20 for c in url
    ):
        p.add(field, "must be an absolute http:// or https:// URL")
        return None
    return url


def _device(location: Doc | None) -> Doc | None:
    return None if location is None else {**location, "source": "device"}


def _source(data: Any, p: Problems, prefix: str, max_text: int) -> Doc:
    """The fields of a rumour's source or a sighting, each checked; unknown fields are refused."""
    check_unknown(data, SOURCE_FIELDS, p, prefix)
    return {
        "text": text_value(data.get("text"), p, prefix + "text", max_chars=max_text, required=False),
        "url": url_value(data.get("url"), p, prefix + "url"),
        "seen_at": time_value(data.get("seen_at"), p, prefix + "seen_at"),
        "location": _device(location_value(data.get("location"), p, prefix + "location")),
    }


def validate_rumour_create(body: Any, max_text: int) -> Doc:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("claim", "location", "source"), p)
    claim = text_value(data.get("claim"), p, "claim", max_chars=lifecycle.CLAIM_MAX_CHARS)
    location = _device(location_value(data.get("location"), p))
    source = None
    raw_source = data.get("source")
    if raw_source is not None:
        if isinstance(raw_source, dict):
            source = _source(raw_source, p, "source.", max_text)
        else:
            p.add("source", "must be an object {text?, url?, seen_at?}")
    p.raise_if_any()
    return {"claim": claim, "location": location, "source": source}


def validate_sighting(body: Any, max_text: int) -> Doc:
    """`{"report_id"}` alone, or the fields of a source."""
    data = require_object(body)
    p = Problems()
    if "report_id" in data:
        report_id = data["report_id"]
        if not isinstance(report_id, str) or not 1 <= len(report_id) <= 128:
            p.add("report_id", "must be a report id string")
        for key in data:
            if key != "report_id":
                p.add(str(key), "cannot be combined with report_id: the report gives the sighting's details")
        p.raise_if_any()
        return {"report_id": report_id}
    sighting = _source(data, p, "", max_text)
    p.raise_if_any()
    return sighting


def validate_rebuttal(body: Any, max_text: int, max_photos: int) -> Doc:
    """`{"verdict", "update_id"}`, or `{"verdict", "text", "location"?, "photos"?}` (returned as `update`, the
    body of the public update to post)."""
    data = require_object(body)
    p = Problems()
    verdict = data.get("verdict")
    if verdict not in lifecycle.VERDICTS:
        p.add("verdict", "must be one of: " + ", ".join(lifecycle.VERDICTS))
    checks = checks_value(data.get("checks"), p)
    update_body: Doc | None = None
    update_id = data.get("update_id")
    if "update_id" in data:
        for key in data:
            if key in ("text", "location", "photos"):
                p.add(key, "cannot be combined with update_id: give one form of rebuttal")
            elif key not in ("verdict", "update_id", "checks"):
                p.add(str(key), "is not a known field")
        if not isinstance(update_id, str) or not 1 <= len(update_id) <= 128:
            p.add("update_id", "must be an update id string")
    elif "text" in data:
        check_unknown(data, ("verdict", "text", "location", "photos", "checks"), p)
        given: Doc = {k: data[k] for k in ("text", "location", "photos") if k in data}
        try:
            validate_update(given, max_text_chars=max_text, max_photos=max_photos)
        except ValidationFailed as exc:
            p.errors.extend(exc.errors)
        update_body = {**given, "visibility": "public", "kind": "info"}
    else:
        check_unknown(data, ("verdict", "checks"), p)
        p.add("update_id", "give update_id (an existing public update) or text (to post a new one)")
    p.raise_if_any()
    return {"verdict": verdict, "update_id": update_id, "update": update_body, "checks": checks}


def checks_value(value: Any, p: Problems) -> Doc:
    """The proposer's legal checks on an answer: each of CHECKS true or false (absent: false)."""
    checks = dict.fromkeys(CHECKS, False)
    if value is None:
        return checks
    if not isinstance(value, dict):
        p.add("checks", "must be an object {" + ", ".join(CHECKS) + "} of true or false")
        return checks
    for key, flag in value.items():
        if key not in CHECKS:
            p.add(f"checks.{key}", "is not a known check; known: " + ", ".join(CHECKS))
        elif not isinstance(flag, bool):
            p.add(f"checks.{key}", "must be true or false")
        else:
            checks[key] = flag
    return checks


def validate_status_patch(body: Any) -> str:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("status",), p)
    if data.get("status") not in lifecycle.STATUSES:
        p.add("status", "must be one of: " + ", ".join(lifecycle.STATUSES))
    p.raise_if_any()
    return str(data["status"])




# ---- rumours ----------------------------------------------------------------------------------------------


def _actor(viewer: Viewer) -> Doc:
    return {"id": viewer.id, "callsign": viewer.callsign}


def render(ctx: Services, rumour: Doc | None, viewer: Viewer | None, now: datetime | None = None) -> Doc | None:
    """The rumour as `viewer` may see it, with `urgency` and `sightings_last_hour` as of now."""
    if rumour is None:
        return None
    return ctx.view(RUMOURS, urgency.refresh(rumour, now or utc_now()), viewer)


def visible_rumour(ctx: Services, rumour_id: str, viewer: Viewer | None) -> Doc:
    """The stored rumour, if `viewer` may see it (404 otherwise, so its existence stays private)."""
    doc = ctx.store.get(RUMOURS, rumour_id)
    if doc is None or ctx.view(RUMOURS, doc, viewer) is None:
        raise NotFound(f"No rumour {rumour_id}.")
    return doc


async def _store(ctx: Services, rumour: Doc, viewer: Viewer, slot: Slot | None,
                 extra: Iterable[tuple[str, Doc]] = ()) -> Doc:
    """Store a rumour change (type "rumour"), with the idempotency answer and `extra` (coll, doc) atomically."""

    def shown(stored: Doc) -> Doc:
        return render(ctx, stored, viewer) or {}

    def aux(stored: Doc) -> list[tuple[str, Doc]]:
        records = list(slot.aux(shown)(stored)) if slot is not None else []
        return records + list(extra)

    stored = await ctx.store.append("rumour", RUMOURS, rumour, aux=aux)
    return shown(stored)


async def create_rumour(ctx: Services, tag: str, viewer: Viewer, inp: Doc, slot: Slot | None) -> Doc:
    event = open_event(ctx, tag)
    rumour = lifecycle.new_rumour(new_id("rum"), event["tag"], inp["claim"], inp["location"], inp["source"],
                                  _actor(viewer), utc_now())
    return await _store(ctx, rumour, viewer, slot)


async def add_sighting(ctx: Services, rumour_id: str, viewer: Viewer, inp: Doc, slot: Slot | None) -> Doc:
    rumour = visible_rumour(ctx, rumour_id, viewer)
    open_event(ctx, rumour["event"])
    report = None
    sighting = inp
    if "report_id" in inp:
        report = ctx.visible(REPORTS, inp["report_id"], viewer)
        if report is None or report["event"] != rumour["event"]:
            raise ValidationFailed.one("report_id", "no such report in this rumour's event")
        sighting = {"text": report["text"], "url": None, "location": report["location"],
                    "seen_at": report["received_at"], "report_id": report["id"]}
    extra: list[tuple[str, Doc]] = []
    if report is not None:
        stored_report = ctx.store.get(REPORTS, report["id"]) or report
        if rumour_id in stored_report.get("counted_for", ()):  # its source may be gone (sources are capped)
            raise Conflict(f"Report {report['id']} is already counted as a sighting of this rumour.")
    updated = lifecycle.add_sighting(rumour, sighting, utc_now(), ctx.settings.max_rumour_sources)
    if report is not None:
        counted = {**stored_report, "counted_for": [*stored_report.get("counted_for", []), rumour_id]}
        extra.append((REPORTS, counted))
        # Counted after the verdict was published: the reporter gets the answer too (once).
        if lifecycle.has_published_verdict(updated):
            extra += replies.mail_docs(ctx, updated, [counted])
    return await _store(ctx, updated, viewer, slot, extra)


def rebuttal_url(ctx: Services, tag: str, update_id: str) -> str:
    return f"{ctx.settings.public_base_url}/events/{tag}#update-{update_id}"


async def add_rebuttal(ctx: Services, rumour_id: str, viewer: Viewer, inp: Doc, slot: Slot | None) -> Doc:
    rumour = visible_rumour(ctx, rumour_id, viewer)
    event = open_event(ctx, rumour["event"])
    if answers_mode(ctx, event) == SECOND_CONTROL:
        # Imported here: answers builds on this module (render, publish_answer).
        from .answers import propose

        return await propose(ctx, rumour, event, viewer, inp, slot)
    update_id = inp["update_id"]
    if inp["update"] is not None:
        # The second form: post the public update first, then link it. Every check that could refuse the
        # rebuttal has run (the verdict, the rumour, the event), so no update is posted for nothing.
        settings = ctx.settings
        posted = validate_update(inp["update"], max_text_chars=settings.max_text_chars,
                                 max_photos=settings.max_photos_per_update)
        update = await store_update(ctx, build_update(ctx, event, viewer, posted), viewer, None)
        update_id = update["id"]
        rumour = visible_rumour(ctx, rumour_id, viewer)  # it may have changed while the update was stored
    update_doc = ctx.store.get(UPDATES, update_id)
    return await publish_answer(ctx, rumour, inp["verdict"], update_doc, _actor(viewer), viewer, slot)


def answers_mode(ctx: Services, event: Doc) -> str:
    """The event's `answer_approval`; events stored before it existed follow the setting."""
    return str(event.get("answer_approval") or ctx.settings.answer_approval)


async def publish_answer(ctx: Services, rumour: Doc, verdict: str, update: Doc | None, author: Doc, viewer: Viewer,
                         slot: Slot | None, extra: Iterable[tuple[str, Doc]] = (), approved: bool = False) -> Doc:
    """Link `update` as the answer with `verdict` (status = verdict, on the public board), and queue the replies
    to reporters in the same journal record, so that none is lost and none delays the answer. `author` is who
    proposed it; `viewer` who made it public (the approver, when `approved`)."""
    now = utc_now()
    updated = lifecycle.add_rebuttal(rumour, verdict, update, author, now,
                                     rebuttal_url(ctx, rumour["event"], (update or {}).get("id", "")),
                                     status_by=_actor(viewer) if approved else None)
    # From the reports' side: a rumour keeps only its newest sources, a report keeps every rumour it counted for.
    counted = [r for r in ctx.store.newest_first(REPORTS, rumour["event"])
               if r is not None and rumour["id"] in r.get("counted_for", ())]
    return await _store(ctx, updated, viewer, slot, [*extra, *replies.mail_docs(ctx, updated, counted)])


async def set_status(ctx: Services, rumour_id: str, viewer: Viewer, status: str) -> Doc:
    rumour = visible_rumour(ctx, rumour_id, viewer)
    updated = lifecycle.set_status(rumour, status, _actor(viewer), utc_now())
    if updated["status"] == rumour["status"]:
        return render(ctx, rumour, viewer) or {}
    return await _store(ctx, updated, viewer, None)


async def unlink_retracted(ctx: Services, update: Doc, by: Viewer) -> None:
    """After an update is retracted: every rebuttal pointing at it goes, and each rumour falls back (to the
    previous rebuttal's verdict, or to `investigating`, which takes it off the public board)."""
    linked = [r for r in ctx.store.newest_first(RUMOURS, update.get("event") or "")
              if r is not None and any(b["update_id"] == update["id"] for b in r.get("rebuttals") or ())]
    for rumour in linked:
        current = ctx.store.get(RUMOURS, rumour["id"]) or rumour
        updated = lifecycle.unlink_update(current, update["id"], _actor(by), utc_now())
        await ctx.store.append("rumour", RUMOURS, updated)


def _docs(ctx: Services, coll: str, tag: str, since: int | None, before: int | None) -> Iterator[Doc]:
    docs = ctx.store.oldest_first(coll, tag, since) if since is not None else ctx.store.newest_first(coll, tag, before)
    return (d for d in docs if d is not None)


def _public_docs(ctx: Services, tag: str, since: int | None, before: int | None) -> Iterator[Doc]:
    """The public's candidates: the rumours on the board (public_index.PublicRumours), not all of the event's."""
    index = ctx.public_rumours
    return index.oldest_first(tag, since) if since is not None else index.newest_first(tag, before)


def list_rumours(
    ctx: Services,
    tag: str,
    viewer: Viewer | None,
    *,
    status: str | None = None,
    since: int | None = None,
    before: int | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> Doc:
    """Without `since`: the most urgent first (`before` keeps rumours last changed before that seq). With
    `since`: changed after it, oldest first by seq, and `last_seq` says where to continue."""
    event = get_event(ctx, tag)
    now = now or utc_now()
    last_seq = ctx.store.last_seq
    items: list[Doc] = []
    docs = (_docs(ctx, RUMOURS, event["tag"], since, before) if viewer is not None
            else _public_docs(ctx, event["tag"], since, before))
    visible = (d for d in docs
               if (status is None or d["status"] == status) and ctx.view(RUMOURS, d, viewer) is not None)
    if since is None:
        for doc in urgency.sort_by_urgency(visible, now)[:limit]:
            shown = ctx.view(RUMOURS, doc, viewer)
            if shown is not None:
                items.append(shown)
        return {"items": items, "last_seq": last_seq}
    for doc in visible:
        shown = render(ctx, doc, viewer, now)
        if shown is None:
            continue
        items.append(shown)
        if len(items) >= limit:
            last_seq = doc["seq"]
            break
    return {"items": items, "last_seq": last_seq}


def public_board(ctx: Services, tag: str, now: datetime | None = None) -> list[Doc]:
    """The public rumour board of an event: each rumour with a published verdict as the public sees it, its
    latest public rebuttal's update (public view, or None) and its ClaimReview; latest answer first."""
    event = get_event(ctx, tag)
    now = now or utc_now()
    page_url = f"{ctx.settings.public_base_url}/events/{event['tag']}/rumours"
    board: list[Doc] = []
    for doc in ctx.public_rumours.newest_first(event["tag"]):  # the board's, not every rumour of the event
        rumour = render(ctx, doc, None, now)
        if rumour is None:
            continue
        update = ctx.visible(UPDATES, rumour["rebuttals"][-1]["update_id"], None)
        review = claimreview.claim_review(rumour, update, organisation=ctx.settings.organisation, page_url=page_url)
        board.append({"rumour": rumour, "rebuttal_update": update, "claim_review": review})
    board.sort(key=lambda entry: (lifecycle.parse_time(entry["rumour"]["rebuttals"][-1]["at"], "at"),
                                  entry["rumour"]["seq"]), reverse=True)
    return board
