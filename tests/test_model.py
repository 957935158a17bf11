"""Every validation rule of model.py, table-driven, and a property: no input makes a validator raise
anything but ValidationFailed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldcomms.errors import ValidationFailed
from fieldcomms.model import (
    UPDATE_FIELDS,
    UpdateInput,
    hashtags,
    validate_event_create,
    validate_event_patch,
    validate_update,
    validate_user,
)


def fields_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return sorted(e["field"] for e in exc.value.errors)


def upd(**fields: Any) -> dict[str, Any]:
    return {"text": "Crowd moving to Barkers Pool", **fields}


# ---- updates: bodies that are accepted, and what they normalise to --------------------------------------

ACCEPTED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"text": "  padded  "}, {"text": "padded", "visibility": "internal", "kind": "info", "photos": (),
                              "location": None, "captured_at": None, "reply_to": None}),
    (upd(text="x" * 2000), {"text": "x" * 2000}),
    (upd(text="  " + "x" * 2000 + "\n"), {"text": "x" * 2000}),  # the limit counts after trimming
    (upd(text="é" * 2000), {"text": "é" * 2000}),  # characters, not bytes
    (upd(visibility="public", kind="warning"), {"visibility": "public", "kind": "warning"}),
    (upd(kind="alert"), {"kind": "alert"}),
    (upd(visibility=None, kind=None), {"visibility": "internal", "kind": "info"}),
    (upd(location={"lat": 53.3811, "lon": -1.4701, "accuracy_m": 12}),
     {"location": {"lat": 53.3811, "lon": -1.4701, "accuracy_m": 12.0}}),
    (upd(location={"lat": 90, "lon": -180}), {"location": {"lat": 90.0, "lon": -180.0}}),
    (upd(location={"lat": -90, "lon": 180, "accuracy_m": 0}), {"location": {"lat": -90.0, "lon": 180.0,
                                                                             "accuracy_m": 0.0}}),
    (upd(location={"lat": 1, "lon": 2, "accuracy_m": None}), {"location": {"lat": 1.0, "lon": 2.0}}),
    (upd(location=None), {"location": None}),
    (upd(captured_at="2011-03-12T14:05:00Z"), {"captured_at": "2011-03-12T14:05:00Z"}),
    (upd(captured_at="2011-03-12T15:05:00+01:00"), {"captured_at": "2011-03-12T14:05:00Z"}),
    (upd(captured_at="2011-03-12T09:35:00-04:30"), {"captured_at": "2011-03-12T14:05:00Z"}),
    (upd(captured_at="2011-03-12t14:05:00z"), {"captured_at": "2011-03-12T14:05:00Z"}),
    (upd(captured_at="2011-03-12T00:30:00+01:00"), {"captured_at": "2011-03-11T23:30:00Z"}),  # day rolls back
    (upd(captured_at="2011-03-12T14:05:00.250+00:00"), {"captured_at": "2011-03-12T14:05:00.250Z"}),
    (upd(captured_at="0001-01-01T00:00:00Z"), {"captured_at": "0001-01-01T00:00:00Z"}),  # years stay 4 digits
    (upd(photos=["ph_1", "ph_2", "ph_1"]), {"photos": ("ph_1", "ph_2")}),  # duplicates collapse
    (upd(photos=["a", "b", "c", "d"]), {"photos": ("a", "b", "c", "d")}),
    (upd(photos=None), {"photos": ()}),
    (upd(reply_to="upd_123"), {"reply_to": "upd_123"}),
]


@pytest.mark.parametrize(("body", "expected"), ACCEPTED)
def test_update_accepted(body: dict[str, Any], expected: dict[str, Any]) -> None:
    got = validate_update(body)
    assert isinstance(got, UpdateInput)
    for key, value in expected.items():
        assert getattr(got, key) == value, key


# ---- updates: bodies refused, and exactly which fields are named -----------------------------------------

NAN, INF = float("nan"), float("inf")

REFUSED: list[tuple[Any, list[str]]] = [
    # the body itself
    (None, ["body"]),
    ([], ["body"]),
    ("text", ["body"]),
    (42, ["body"]),
    # text
    ({}, ["text"]),
    (upd(text=""), ["text"]),
    (upd(text="   \n\t "), ["text"]),  # empty after trimming
    (upd(text="x" * 2001), ["text"]),
    (upd(text="bad\x00byte"), ["text"]),
    (upd(text=None), ["text"]),
    (upd(text=5), ["text"]),
    (upd(text=["a"]), ["text"]),
    # enums
    (upd(kind="panic"), ["kind"]),
    (upd(kind="INFO"), ["kind"]),
    (upd(kind=1), ["kind"]),
    (upd(kind=["info"]), ["kind"]),
    (upd(visibility="secret"), ["visibility"]),
    (upd(visibility=True), ["visibility"]),
    (upd(visibility={"a": 1}), ["visibility"]),
    # locations
    (upd(location={"lat": 91, "lon": 0}), ["location.lat"]),
    (upd(location={"lat": -90.0001, "lon": 0}), ["location.lat"]),
    (upd(location={"lat": 0, "lon": 180.5}), ["location.lon"]),
    (upd(location={"lat": 0, "lon": -181}), ["location.lon"]),
    (upd(location={"lat": NAN, "lon": 0}), ["location.lat"]),
    (upd(location={"lat": 0, "lon": INF}), ["location.lon"]),
    (upd(location={"lat": -INF, "lon": NAN}), ["location.lat", "location.lon"]),
    (upd(location={"lat": True, "lon": 0}), ["location.lat"]),  # a bool is not a number
    (upd(location={"lat": 0, "lon": False}), ["location.lon"]),
    (upd(location={"lat": "53.38", "lon": 0}), ["location.lat"]),
    (upd(location={"lat": 10**400, "lon": 0}), ["location.lat"]),  # beyond a double
    (upd(location={"lon": 0}), ["location.lat"]),
    (upd(location={}), ["location.lat", "location.lon"]),
    (upd(location={"lat": 0, "lon": 0, "accuracy_m": -1}), ["location.accuracy_m"]),
    (upd(location={"lat": 0, "lon": 0, "accuracy_m": NAN}), ["location.accuracy_m"]),
    (upd(location={"lat": 0, "lon": 0, "accuracy_m": INF}), ["location.accuracy_m"]),
    (upd(location={"lat": 0, "lon": 0, "accuracy_m": True}), ["location.accuracy_m"]),
    (upd(location={"lat": 0, "lon": 0, "accuracy_m": "5"}), ["location.accuracy_m"]),
    (upd(location={"lat": 0, "lon": 0, "alt": 3}), ["location.alt"]),
    (upd(location=[53.3, -1.4]), ["location"]),
    (upd(location="53.3,-1.4"), ["location"]),
    # times
    (upd(captured_at="2011-03-12T14:05:00"), ["captured_at"]),  # no offset
    (upd(captured_at="2011-03-12"), ["captured_at"]),
    (upd(captured_at="12/03/2011 14:05"), ["captured_at"]),
    (upd(captured_at="2011-02-30T10:00:00Z"), ["captured_at"]),  # impossible date
    (upd(captured_at="2011-13-01T10:00:00Z"), ["captured_at"]),
    (upd(captured_at="2011-03-12T25:00:00Z"), ["captured_at"]),
    (upd(captured_at="2011-03-12T14:61:00Z"), ["captured_at"]),
    (upd(captured_at="2011-03-12T14:05:00+99:99"), ["captured_at"]),
    (upd(captured_at="0001-01-01T00:00:00+01:00"), ["captured_at"]),  # before year 1 in UTC
    (upd(captured_at="9999-12-31T23:59:59-01:00"), ["captured_at"]),  # after year 9999 in UTC
    (upd(captured_at="2011-03-12T14:05:00Z" + " " * 30), ["captured_at"]),
    (upd(captured_at=1299938700), ["captured_at"]),
    (upd(captured_at=True), ["captured_at"]),
    # photos
    (upd(photos=["a", "b", "c", "d", "e"]), ["photos"]),
    (upd(photos="ph_1"), ["photos"]),
    (upd(photos={"id": "ph_1"}), ["photos"]),
    (upd(photos=[1]), ["photos[0]"]),
    (upd(photos=["ok", None, ""]), ["photos[1]", "photos[2]"]),
    (upd(photos=["x" * 129]), ["photos[0]"]),
    # reply_to
    (upd(reply_to=5), ["reply_to"]),
    (upd(reply_to=""), ["reply_to"]),
    (upd(reply_to="x" * 129), ["reply_to"]),
    (upd(reply_to=["upd_1"]), ["reply_to"]),
    # unknown fields
    (upd(author="someone"), ["author"]),
    (upd(seq=1, id="upd_1"), ["id", "seq"]),
]


@pytest.mark.parametrize(("body", "fields"), REFUSED)
def test_update_refused(body: Any, fields: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_update(body)
    assert fields_of(exc) == sorted(fields)
    assert exc.value.status == 422
    assert all(e["message"] for e in exc.value.errors)


def test_update_reports_every_problem_at_once() -> None:
    body = {
        "text": "",
        "location": {"lat": 100, "lon": NAN, "accuracy_m": -3},
        "visibility": "everyone",
        "kind": "shout",
        "photos": ["a", 7],
        "captured_at": "yesterday",
        "reply_to": 9,
        "colour": "blue",
    }
    with pytest.raises(ValidationFailed) as exc:
        validate_update(body)
    assert fields_of(exc) == sorted([
        "text", "location.lat", "location.lon", "location.accuracy_m", "visibility", "kind", "photos[1]",
        "captured_at", "reply_to", "colour",
    ])
    for field in ("text", "kind", "captured_at", "colour"):
        assert field in exc.value.detail


def test_update_limits_come_from_settings() -> None:
    assert validate_update(upd(text="x" * 10), max_text_chars=10).text == "x" * 10
    with pytest.raises(ValidationFailed):
        validate_update(upd(text="x" * 11), max_text_chars=10)
    with pytest.raises(ValidationFailed):
        validate_update(upd(photos=["a", "b"]), max_photos=1)


# ---- hashtags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("no tags here", ["libdempolicing"]),
    ("March route agreed. #libdempolicing", ["libdempolicing"]),
    ("#LibDemPolicing #Sheffield and #sheffield", ["libdempolicing", "sheffield"]),
    ("kettle? #NoKettle, #x", ["libdempolicing", "nokettle"]),  # one character is too short
    ("mail me a#b or ##double", ["libdempolicing"]),
])
def test_hashtags(text: str, expected: list[str]) -> None:
    assert hashtags(text, "libdempolicing") == expected


# ---- events -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tag", "expected"), [
    ("#LibDemPolicing", "libdempolicing"),
    ("libdempolicing", "libdempolicing"),
    ("  #Lib_Dem_2011 ", "lib_dem_2011"),
    ("ab", "ab"),
    ("a" * 64, "a" * 64),
])
def test_event_tag_normalised(tag: str, expected: str) -> None:
    assert validate_event_create({"tag": tag, "title": "t"})["tag"] == expected


@pytest.mark.parametrize("tag", ["a", "#a", "", "#", "a" * 65, "lib dem", "lib-dem", "libdém", "lib#dem",
                                 None, 12, ["libdem"]])
def test_event_tag_refused(tag: Any) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_event_create({"tag": tag, "title": "t"})
    assert fields_of(exc) == ["tag"]


EVENTS_REFUSED: list[tuple[Any, list[str]]] = [
    ("not an object", ["body"]),
    ({"tag": "ok"}, ["title"]),
    ({"tag": "ok", "title": "   "}, ["title"]),
    ({"tag": "ok", "title": "t" * 201}, ["title"]),
    ({"tag": "ok", "title": "t", "description": 5}, ["description"]),
    ({"tag": "ok", "title": "t", "status": "open"}, ["status"]),
    ({"tag": "ok", "title": "t", "starts_at": "2011-03-12T10:00:00"}, ["starts_at"]),
    ({"tag": "ok", "title": "t", "ends_at": "2011-04-31T10:00:00Z"}, ["ends_at"]),
    ({"tag": "ok", "title": "t", "starts_at": "2011-03-12T10:00:00Z", "ends_at": "2011-03-12T09:00:00Z"},
     ["ends_at"]),
    ({"tag": "ok", "title": "t", "owner": "me"}, ["owner"]),
    ({"tag": "x", "title": "", "status": "done", "extra": 1}, ["extra", "status", "tag", "title"]),
]


@pytest.mark.parametrize(("body", "fields"), EVENTS_REFUSED)
def test_event_create_refused(body: Any, fields: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_event_create(body)
    assert fields_of(exc) == sorted(fields)


def test_event_create_defaults_and_normalises() -> None:
    got = validate_event_create({"tag": "#Demo", "title": " Demo ", "starts_at": "2011-03-12T10:00:00+01:00"})
    assert got == {"tag": "demo", "title": "Demo", "description": "", "status": "planned",
                   "starts_at": "2011-03-12T09:00:00Z", "ends_at": None, "retain_until": None,
                   "answer_approval": None}


@pytest.mark.parametrize(("body", "fields"), [
    ({"status": "finished"}, ["status"]),
    ({"status": None}, ["status"]),
    ({"title": ""}, ["title"]),
    ({"tag": "other"}, ["tag"]),  # a tag never changes
    ({"ends_at": "2011-03-12T08:00:00Z"}, ["ends_at"]),  # before the current starts_at
    ({"starts_at": "nope", "title": 3}, ["starts_at", "title"]),
    ([], ["body"]),
])
def test_event_patch_refused(body: Any, fields: list[str]) -> None:
    current = {"tag": "demo", "title": "Demo", "starts_at": "2011-03-12T09:00:00Z", "ends_at": None}
    with pytest.raises(ValidationFailed) as exc:
        validate_event_patch(body, current)
    assert fields_of(exc) == sorted(fields)


def test_event_patch_changes() -> None:
    current = {"tag": "demo", "title": "Demo", "starts_at": None, "ends_at": None}
    assert validate_event_patch({"status": "closed", "description": ""}, current) == {"status": "closed",
                                                                                    "description": ""}
    assert validate_event_patch({"ends_at": "2011-03-12T18:00:00+01:00"}, current) == {
        "ends_at": "2011-03-12T17:00:00Z"}


# ---- users --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("callsign", ["A1", "sy-101", "Sierra.4", "x", "a_b", "A" * 32])
def test_user_callsign_accepted(callsign: str) -> None:
    assert validate_user({"name": "N", "callsign": callsign, "role": "officer"})["callsign"] == callsign


@pytest.mark.parametrize(("body", "fields"), [
    ({"name": "N", "callsign": "", "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": "-lead", "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": "has space", "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": "A" * 33, "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": "a/b", "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": 7, "role": "officer"}, ["callsign"]),
    ({"name": "N", "callsign": "ok", "role": "superuser"}, ["role"]),
    ({"name": "N", "callsign": "ok", "role": "Officer"}, ["role"]),
    ({"name": "N", "callsign": "ok"}, ["role"]),
    ({"callsign": "ok", "role": "admin"}, ["name"]),
    ({"name": " ", "callsign": "ok", "role": "admin"}, ["name"]),
    ({"name": "N", "callsign": "ok", "role": "admin", "token": "x"}, ["token"]),
    ({}, ["callsign", "name", "role"]),
    ("admin", ["body"]),
])
def test_user_refused(body: Any, fields: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_user(body)
    assert fields_of(exc) == sorted(fields)


# ---- property: nothing but ValidationFailed, ever -----------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "info", "public", "2011-03-12T14:05:00+01:00", "0001-01-01T00:00:00+05:00",
                       "2011-02-30T00:00:00Z", "\x00", "#tag"])
)
keys = st.sampled_from([*UPDATE_FIELDS, "lat", "lon", "accuracy_m"]) | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=8),
    max_leaves=20,
)
update_like = st.fixed_dictionaries({}, optional={
    "text": json_values | st.text(max_size=50),
    "location": json_values | st.fixed_dictionaries(
        {"lat": json_values | st.floats(), "lon": json_values | st.floats()},
        optional={"accuracy_m": json_values | st.floats()}),
    "visibility": json_values | st.sampled_from(["public", "internal"]),
    "kind": json_values | st.sampled_from(["info", "warning", "alert"]),
    "photos": json_values | st.lists(st.text(max_size=5), max_size=6),
    "captured_at": json_values,
    "reply_to": json_values,
    "extra": json_values,
})


@settings(max_examples=200, deadline=None)
@given(json_values | update_like)
def test_validate_update_raises_only_validation_failed(body: Any) -> None:
    try:
        got = validate_update(body)
    except ValidationFailed as exc:
        assert exc.errors and all(set(e) == {"field", "message"} for e in exc.errors)
        return
    assert isinstance(got, UpdateInput)
    assert 1 <= len(got.text) <= 2000
    if got.location is not None:
        assert math.isfinite(got.location["lat"]) and math.isfinite(got.location["lon"])


@settings(max_examples=60, deadline=None)
@given(json_values | st.fixed_dictionaries({}, optional={
    "tag": json_values, "title": json_values, "starts_at": json_values, "ends_at": json_values,
    "status": json_values, "name": json_values, "callsign": json_values, "role": json_values}))
def test_other_validators_raise_only_validation_failed(body: Any) -> None:
    for validate in (validate_event_create, validate_user,
                     lambda b: validate_event_patch(b, {"starts_at": None, "ends_at": None})):
        try:
            validate(body)
        except ValidationFailed:
            pass
