"""Retention (MoPI review, retention and disposal): until when an event's personal data is kept.

`retain_until` is the event's `ends_at`, or else the time it closed, plus the setting `retention_days`; control
may set it explicitly (never earlier than now: model.retain_until_value), and then it is no longer derived.
An event is due for purging once it is closed, its `retain_until` has passed, and it was not purged already."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..model import format_time, parse_time_str

Doc = dict[str, Any]


def derived_retain_until(event: Doc, days: float, now: datetime) -> str | None:
    """The derived value: from `ends_at`, else from the closing time (now, when it is closing), else None."""
    if event.get("ends_at"):
        base = parse_time_str(event["ends_at"])
    elif event.get("status") == "closed":
        base = parse_time_str(event["closed_at"]) if event.get("closed_at") else now
    else:
        return None
    return format_time(base + timedelta(days=days))


def apply_retention(old: Doc | None, new: Doc, days: float, now: datetime, *, explicit: bool) -> Doc:
    """`new` with `closed_at` and `retain_until` kept in step; `explicit`: control set retain_until just now."""
    out = dict(new)
    if out.get("status") == "closed" and not out.get("closed_at"):
        out["closed_at"] = format_time(now)
    elif out.get("status") != "closed":
        out.pop("closed_at", None)
    if explicit:
        out["_retain_explicit"] = True
    elif not (old or {}).get("_retain_explicit"):
        out["retain_until"] = derived_retain_until(out, days, now)
    return out


def is_due(event: Doc, now: datetime) -> bool:
    return (event.get("status") == "closed" and not event.get("purged_at") and bool(event.get("retain_until"))
            and parse_time_str(event["retain_until"]) <= now)
