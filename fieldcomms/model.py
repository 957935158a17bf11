"""Input validation and the shapes of stored items. No aiohttp, no TinyDB.

Every validator takes parsed JSON (anything at all) and either returns a normalised dict or raises
`ValidationFailed` naming every bad field at once. Nothing here raises anything else for any input.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import ANSWER_APPROVAL_MODES
from .errors import ValidationFailed

TAG_RE = re.compile(r"^[a-z0-9_]{2,64}$")
HASHTAG_RE = re.compile(r"(?<![\w#])#([A-Za-z0-9_]{2,64})\b")
EVENT_STATUSES = ("planned", "live", "closed")
VISIBILITIES = ("internal", "public")
UPDATE_KINDS = ("info", "warning", "alert")
ROLES = ("officer", "control", "admin")
CALLSIGN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


_random_pool = b""


def new_id(prefix: str) -> str:
    """Opaque, unguessable, unique across the deployment: 64 bits from the OS's CSPRNG, drawn 4 KiB at a
    time because one getrandom() call per id was 8% of the server's time on the POST path."""
    global _random_pool
    if len(_random_pool) < 8:
        _random_pool = secrets.token_bytes(4096)
    chunk, _random_pool = _random_pool[:8], _random_pool[8:]
    return f"{prefix}_{chunk.hex()}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    # isoformat, not strftime: strftime("%Y") does not zero-pad years before 1000 on glibc.
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="seconds" if utc.microsecond == 0 else "milliseconds") + "Z"


def now_str() -> str:
    return format_time(utc_now())


def parse_time_str(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


class Problems:
    """Collects field errors so that one response can name them all."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def require_object(value: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed.one(field, "must be a JSON object")
    return value


def check_unknown(data: dict[str, Any], allowed: Iterable[str], p: Problems, prefix: str = "") -> None:
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            p.add(prefix + str(key), "is not a known field")


def normalise_tag(value: Any, p: Problems, field: str = "tag") -> str | None:
    if not isinstance(value, str):
        p.add(field, "must be a string like #LibDemPolicing")
        return None
    tag = value.strip().lstrip("#").lower()
    if not TAG_RE.match(tag):
        p.add(field, "must be 2 to 64 letters, digits or underscores (a leading # is allowed)")
        return None
    return tag


def time_value(value: Any, p: Problems, field: str) -> str | None:
    """RFC 3339 with an offset; normalised to UTC with Z."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        p.add(field, "must be an RFC 3339 time string, e.g. 2011-03-12T14:05:00Z")
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})", value):
        p.add(field, "must be an RFC 3339 time with a UTC offset, e.g. 2011-03-12T14:05:00Z")
        return None
    try:
        # OverflowError: a valid offset can still push 0001-01-01 or 9999-12-31 out of range in UTC.
        return format_time(parse_time_str(value))
    except (ValueError, OverflowError):
        p.add(field, "is not a real date and time")
        return None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:  # an int beyond a double's range
        return None
    return result if math.isfinite(result) else None


def location_value(value: Any, p: Problems, field: str = "location") -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        p.add(field, "must be an object {lat, lon, accuracy_m?}")
        return None
    before = len(p.errors)
    check_unknown(value, ("lat", "lon", "accuracy_m"), p, field + ".")
    lat, lon = number(value.get("lat")), number(value.get("lon"))
    if lat is None or not -90 <= lat <= 90:
        p.add(field + ".lat", "must be a finite number from -90 to 90")
    if lon is None or not -180 <= lon <= 180:
        p.add(field + ".lon", "must be a finite number from -180 to 180")
    out: dict[str, Any] = {"lat": lat, "lon": lon}
    if "accuracy_m" in value and value["accuracy_m"] is not None:
        acc = number(value["accuracy_m"])
        if acc is None or acc < 0:
            p.add(field + ".accuracy_m", "must be a finite number >= 0")
        out["accuracy_m"] = acc
    return out if len(p.errors) == before else None


def text_value(
    value: Any, p: Problems, field: str, *, max_chars: int, required: bool = True, min_chars: int = 1
) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        p.add(field, "must be a string")
        return None
    text = value.strip()
    if len(text) < min_chars or len(text) > max_chars:
        p.add(field, f"must be {min_chars} to {max_chars} characters after trimming")
        return None
    if "\x00" in text:
        p.add(field, "must not contain NUL characters")
        return None
    return text


def choice(value: Any, p: Problems, field: str, options: tuple[str, ...], default: str | None) -> str | None:
    if value is None:
        return default
    if value not in options:
        p.add(field, "must be one of " + ", ".join(options))
        return None
    return str(value)


def hashtags(text: str, event_tag: str) -> list[str]:
    found = [event_tag]
    for m in HASHTAG_RE.finditer(text):
        tag = m.group(1).lower()
        if tag not in found:
            found.append(tag)
    return found


# ---- events ---------------------------------------------------------------------------------------

EVENT_FIELDS = ("tag", "title", "description", "starts_at", "ends_at", "status", "retain_until", "answer_approval")
ANSWER_APPROVAL = ANSWER_APPROVAL_MODES


def retain_until_value(value: Any, p: Problems) -> str | None:
    """A new `retain_until`: a time, never earlier than now (personal data is kept at least until then)."""
    if value is None:
        p.add("retain_until", "must be an RFC 3339 time, not earlier than now")
        return None
    when = time_value(value, p, "retain_until")
    if when is not None and parse_time_str(when) < utc_now():
        p.add("retain_until", "must not be earlier than now")
        return None
    return when


def validate_event_create(body: Any) -> dict[str, Any]:
    data = require_object(body)
    p = Problems()
    check_unknown(data, EVENT_FIELDS, p)
    tag = normalise_tag(data.get("tag"), p)
    title = text_value(data.get("title"), p, "title", max_chars=200)
    description = text_value(data.get("description"), p, "description", max_chars=5000, required=False, min_chars=0)
    starts_at = time_value(data.get("starts_at"), p, "starts_at")
    ends_at = time_value(data.get("ends_at"), p, "ends_at")
    status = choice(data.get("status"), p, "status", EVENT_STATUSES, "planned")
    # None: the setting `answer_approval` decides (domain.events.create_event fills it in).
    approval = choice(data.get("answer_approval"), p, "answer_approval", ANSWER_APPROVAL, None)
    if starts_at and ends_at and parse_time_str(ends_at) < parse_time_str(starts_at):
        p.add("ends_at", "must not be before starts_at")
    # None: domain.events derives it from ends_at or the closing time and the setting retention_days.
    retain_until = retain_until_value(data["retain_until"], p) if "retain_until" in data else None
    p.raise_if_any()
    return {"tag": tag, "title": title, "description": description or "", "status": status,
            "starts_at": starts_at, "ends_at": ends_at, "retain_until": retain_until, "answer_approval": approval}


def validate_event_patch(body: Any, current: dict[str, Any]) -> dict[str, Any]:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("title", "description", "status", "starts_at", "ends_at", "retain_until", "answer_approval"), p)
    changes: dict[str, Any] = {}
    if "retain_until" in data:
        changes["retain_until"] = retain_until_value(data["retain_until"], p)
    if "answer_approval" in data:
        changes["answer_approval"] = choice(data["answer_approval"], p, "answer_approval", ANSWER_APPROVAL, None)
        if data["answer_approval"] is None:
            p.add("answer_approval", "must be one of " + ", ".join(ANSWER_APPROVAL))
    if "title" in data:
        changes["title"] = text_value(data["title"], p, "title", max_chars=200)
    if "description" in data:
        changes["description"] = text_value(data["description"], p, "description", max_chars=5000, min_chars=0) or ""
    if "status" in data:
        changes["status"] = choice(data["status"], p, "status", EVENT_STATUSES, None)
        if data["status"] is None:
            p.add("status", "must be one of " + ", ".join(EVENT_STATUSES))
    for key in ("starts_at", "ends_at"):
        if key in data:
            changes[key] = time_value(data[key], p, key)
    starts, ends = changes.get("starts_at", current.get("starts_at")), changes.get("ends_at", current.get("ends_at"))
    if not p.errors and starts and ends and parse_time_str(ends) < parse_time_str(starts):
        p.add("ends_at", "must not be before starts_at")
    p.raise_if_any()
    return changes


# ---- updates --------------------------------------------------------------------------------------

UPDATE_FIELDS = ("text", "location", "visibility", "kind", "photos", "captured_at", "reply_to")


@dataclass(frozen=True)
class UpdateInput:
    text: str
    location: dict[str, Any] | None
    visibility: str
    kind: str
    photos: tuple[str, ...]
    captured_at: str | None
    reply_to: str | None


def validate_update(body: Any, *, max_text_chars: int = 2000, max_photos: int = 4) -> UpdateInput:
    data = require_object(body)
    p = Problems()
    check_unknown(data, UPDATE_FIELDS, p)
    text = text_value(data.get("text"), p, "text", max_chars=max_text_chars)
    location = location_value(data.get("location"), p)
    visibility = choice(data.get("visibility"), p, "visibility", VISIBILITIES, "internal")
    kind = choice(data.get("kind"), p, "kind", UPDATE_KINDS, "info")
    photos_raw = data.get("photos", [])
    photos: list[str] = []
    if photos_raw is None:
        photos_raw = []
    if not isinstance(photos_raw, list):
        p.add("photos", "must be a list of photo ids")
    elif len(photos_raw) > max_photos:
        p.add("photos", f"at most {max_photos} photos an update")
    else:
        for i, photo in enumerate(photos_raw):
            if not isinstance(photo, str) or not 1 <= len(photo) <= 128:
                p.add(f"photos[{i}]", "must be a photo id string")
            elif photo not in photos:
                photos.append(photo)
    captured_at = time_value(data.get("captured_at"), p, "captured_at")
    reply_to = data.get("reply_to")
    if reply_to is not None and (not isinstance(reply_to, str) or not 1 <= len(reply_to) <= 128):
        p.add("reply_to", "must be an update id string")
    p.raise_if_any()
    assert text is not None and visibility is not None and kind is not None  # guaranteed by no problems
    return UpdateInput(text, location, visibility, kind, tuple(photos), captured_at, reply_to)


# ---- users ----------------------------------------------------------------------------------------


def validate_user(body: Any) -> dict[str, str]:
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("name", "callsign", "role"), p)
    name = text_value(data.get("name"), p, "name", max_chars=200)
    callsign = data.get("callsign")
    if not isinstance(callsign, str) or not CALLSIGN_RE.fullmatch(callsign):  # `$` would let "A1\n" in
        p.add("callsign", "must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    role = choice(data.get("role"), p, "role", ROLES, None)
    if data.get("role") is None:
        p.add("role", "must be one of " + ", ".join(ROLES))
    p.raise_if_any()
    return {"name": str(name), "callsign": str(callsign), "role": str(role)}
