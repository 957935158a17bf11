"""The rules of a rumour's life: logged, sighted, investigated, answered, and unanswered again.

Every function takes a rumour dict and returns a new one; nothing is mutated, so a handler can compare before and
after, and a failed rule leaves the stored rumour untouched.

Status rules (`set_status`, control's `PATCH`):

- `unverified` is where a rumour starts; nothing returns to it (409), since "nobody has looked" cannot become
  true again. Setting it on a rumour that is already `unverified` is a no-op.
- `investigating` may be set from any status. From a published verdict it takes the rumour off the public board
  while keeping its rebuttals, so control can withdraw an answer without erasing what was said.
- A verdict may be set from any status. With no rebuttal it records control's conclusion but publishes nothing:
  the public sees only verdicts backed by a public update. Where rebuttals exist, the verdict must be the latest
  rebuttal's (409 otherwise): a published answer changes only by publishing a new rebuttal, so the board never
  shows a verdict that its own evidence contradicts.
- Setting the current status again changes nothing and adds no history.

A rebuttal (`add_rebuttal`) sets the status to its verdict from any status. Unlinking a retracted update
(`unlink_update`) falls back to the latest remaining rebuttal's verdict, or to `investigating` when none remains.
Every status change appends `{"at", "status", "by": {"id", "callsign"}}` to `history`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldcomms.errors import Conflict, ValidationFailed

UNVERIFIED = "unverified"
INVESTIGATING = "investigating"
VERDICTS = ("false", "misleading", "true", "unproven")
STATUSES = (UNVERIFIED, INVESTIGATING, *VERDICTS)
CLAIM_MAX_CHARS = 500

# Kept for urgency; the leading underscore is what the visibility layer strips, so no viewer ever sees it.
INTERNAL_FIELDS = ("_sighting_times", "_answered")
# Sighting times older than this weigh 0.5 ** 12 in urgency (30-minute half-life) and are outside the last
# hour: they are let go, so a rumour seen all day does not carry every moment it was seen.
SIGHTING_TIMES_KEPT = timedelta(hours=6)

Rumour = dict[str, Any]
Actor = Mapping[str, Any]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`, to the second, as the API promises."""
    if moment.tzinfo is None:
        raise ValueError("a time without a zone is ambiguous")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, field: str = "seen_at") -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValidationFailed.one(field, "must be an RFC 3339 time, e.g. 2011-03-12T14:05:00Z") from None
    if moment.tzinfo is None:
        raise ValidationFailed.one(field, "must carry a time zone, e.g. Z or +01:00")
    return moment.astimezone(UTC)


def has_published_verdict(rumour: Mapping[str, Any]) -> bool:
    """What puts a rumour on the public board: a verdict, backed by at least one rebuttal."""
    return rumour.get("status") in VERDICTS and bool(rumour.get("rebuttals"))


def _actor(by: Actor) -> dict[str, Any]:
    return {"id": by.get("id"), "callsign": by.get("callsign")}


def _source(sighting: Mapping[str, Any], seen_at: str) -> dict[str, Any]:
    source = {
        "text": sighting.get("text"),
        "url": sighting.get("url"),
        "seen_at": seen_at,
        "location": sighting.get("location"),
    }
    if sighting.get("report_id") is not None:
        source["report_id"] = sighting["report_id"]
    return source


def _seen_at(sighting: Mapping[str, Any] | None, now: datetime) -> str:
    raw = (sighting or {}).get("seen_at")
    if raw is None:
        return format_time(now)
    # A handset's clock may run ahead; a sighting in the future would otherwise outrank everything.
    return format_time(min(parse_time(raw), now))


def _with_status(rumour: Rumour, status: str, by: Actor, now: datetime) -> Rumour:
    if rumour["status"] == status:
        return rumour
    rumour["status"] = status
    rumour["history"] = [*rumour["history"], {"at": format_time(now), "status": status, "by": _actor(by)}]
    return rumour


def _refreshed(rumour: Rumour, now: datetime) -> Rumour:
    # Imported here because urgency builds on this module's rules (has_published_verdict).
    from fieldcomms.rumours.urgency import refresh

    return refresh(rumour, now)


def new_rumour(
    id: str,
    event: str,
    claim: str,
    location: Mapping[str, Any] | None,
    source: Mapping[str, Any] | None,
    by: Actor,
    now: datetime,
) -> Rumour:
    """A freshly logged rumour: `unverified`, seen once (by whoever logged it), `seq` left for the store."""
    text = (claim or "").strip() if isinstance(claim, str) else ""
    if not text:
        raise ValidationFailed.one("claim", "must not be empty")
    if len(text) > CLAIM_MAX_CHARS:
        raise ValidationFailed.one("claim", f"must be at most {CLAIM_MAX_CHARS} characters")
    seen_at = _seen_at(source, now)
    rumour: Rumour = {
        "id": id,
        "seq": None,
        "event": event,
        "claim": text,
        "status": UNVERIFIED,
        "location": dict(location) if location is not None else None,
        "first_seen_at": seen_at,
        "last_seen_at": seen_at,
        "sightings": 1,
        "sightings_last_hour": 0,
        "urgency": 0.0,
        "sources": [_source(source, seen_at)] if source else [],
        "rebuttals": [],
        "history": [{"at": format_time(now), "status": UNVERIFIED, "by": _actor(by)}],
        "_sighting_times": [seen_at],
    }
    return _refreshed(rumour, now)


def add_sighting(rumour: Mapping[str, Any], sighting: Mapping[str, Any], now: datetime,
                 max_sources: int = 100) -> Rumour:
    """Count one more sighting. A report (`report_id`) counts once however often it is submitted (409 after;
    the report's own `counted_for` is the record of that, since old sources are let go).

    The rumour stays a small document however often it is seen: it keeps the newest `max_sources` sources,
    and the sighting times that still weigh in its urgency (SIGHTING_TIMES_KEPT); `sightings` counts all."""
    report_id = sighting.get("report_id")
    if report_id is not None and any(s.get("report_id") == report_id for s in rumour["sources"]):
        raise Conflict(f"Report {report_id} is already counted as a sighting of this rumour.")
    updated: Rumour = copy.deepcopy(dict(rumour))
    seen_at = _seen_at(sighting, now)
    updated["sightings"] = rumour["sightings"] + 1
    sources = [*updated["sources"], _source(sighting, seen_at)]
    updated["sources"] = sources[-max(1, max_sources):]  # the newest logged, in the order they were logged
    oldest_kept = format_time(now - SIGHTING_TIMES_KEPT)
    updated["_sighting_times"] = sorted(
        t for t in [*rumour.get("_sighting_times", []), seen_at] if t >= oldest_kept or t == seen_at)
    # A late-arriving sighting from a queued handset may predate what we knew.
    updated["first_seen_at"] = min(rumour["first_seen_at"], seen_at)
    updated["last_seen_at"] = max(rumour["last_seen_at"], seen_at)
    return _refreshed(updated, now)


def set_status(rumour: Mapping[str, Any], status: str, by: Actor, now: datetime) -> Rumour:
    """Control's status change, under the rules in this module's docstring."""
    if status not in STATUSES:
        raise ValidationFailed.one("status", f"must be one of: {', '.join(STATUSES)}")
    current = rumour["status"]
    if status == current:
        return _refreshed(dict(rumour), now)
    if status == UNVERIFIED:
        raise Conflict("A rumour cannot return to unverified; set it to investigating instead.")
    rebuttals = rumour.get("rebuttals") or []
    if status in VERDICTS and rebuttals and rebuttals[-1]["verdict"] != status:
        raise Conflict(
            f"The published verdict is {rebuttals[-1]['verdict']!r}; post a rebuttal to change it to {status!r}."
        )
    updated = _with_status(copy.deepcopy(dict(rumour)), status, by, now)
    return _refreshed(updated, now)


def rebuttal_problems(rumour: Mapping[str, Any], verdict: Any, update: Mapping[str, Any] | None,
                      *, needs_public: bool = True) -> list[dict[str, str]]:
    """Why `update` cannot answer `rumour` (empty: it can). `needs_public=False` for an answer awaiting
    approval, whose new update stays internal until it is approved."""
    problems: list[dict[str, str]] = []
    if verdict not in VERDICTS:
        problems.append({"field": "verdict", "message": f"must be one of: {', '.join(VERDICTS)}"})
    if update is None:
        problems.append({"field": "update_id", "message": "no such update"})
        return problems
    reasons = []
    if update.get("event") != rumour["event"]:
        reasons.append(f"belong to event {rumour['event']!r}")
    if needs_public and update.get("visibility") != "public":
        reasons.append("be public")
    if update.get("status") != "active":
        reasons.append("be active (not retracted)")
    if reasons:
        problems.append({"field": "update_id", "message": "the rebuttal's update must " + " and ".join(reasons)})
    return problems


def add_rebuttal(
    rumour: Mapping[str, Any],
    verdict: str,
    update: Mapping[str, Any] | None,
    by: Actor,
    now: datetime,
    url: str | None,
    status_by: Actor | None = None,
) -> Rumour:
    """Answer a rumour with a public update. `update` is the stored update the rebuttal points at (None: unknown).
    `status_by`: who made the answer public, when that is not its author (a second control user approving it).

    Every problem is reported at once (422); linking the same update twice is a conflict (409).
    """
    problems = rebuttal_problems(rumour, verdict, update)
    if problems or update is None:
        raise ValidationFailed(problems)
    if any(r["update_id"] == update["id"] for r in rumour.get("rebuttals") or []):
        raise Conflict(f"Update {update['id']} already answers this rumour.")
    updated = copy.deepcopy(dict(rumour))
    updated["rebuttals"] = [
        *updated.get("rebuttals", []),
        {"update_id": update["id"], "verdict": verdict, "url": url, "at": format_time(now), "by": _actor(by)},
    ]
    updated = _with_status(updated, verdict, status_by or by, now)
    # Answered in public: once it leaves the board again, the stream tells the public to take it down.
    updated["_answered"] = True
    return _refreshed(updated, now)


def unlink_update(rumour: Mapping[str, Any], update_id: str, by: Actor, now: datetime) -> Rumour:
    """Drop the rebuttals that point at a retracted update, and fall back as the module docstring says."""
    rebuttals = rumour.get("rebuttals") or []
    remaining = [r for r in rebuttals if r["update_id"] != update_id]
    updated = copy.deepcopy(dict(rumour))
    if len(remaining) == len(rebuttals):
        return _refreshed(updated, now)
    updated["rebuttals"] = copy.deepcopy(remaining)
    if updated["status"] in VERDICTS:
        fallback = remaining[-1]["verdict"] if remaining else INVESTIGATING
        updated = _with_status(updated, fallback, by, now)
    return _refreshed(updated, now)


def without_internal_fields(rumour: Mapping[str, Any]) -> Rumour:
    """The rumour as the API shows it to officers; the visibility layer strips further for the public."""
    return {k: copy.deepcopy(v) for k, v in rumour.items() if k not in INTERNAL_FIELDS}
