"""The lifecycle rules of API.md "Rumours and rebuttals", one table row per rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldcomms.errors import Conflict, ValidationFailed
from fieldcomms.rumours import lifecycle as lc

NOW = datetime(2011, 3, 12, 14, 0, tzinfo=UTC)
OFFICER = {"id": "u-officer", "callsign": "Bravo 2", "role": "officer", "token_hash": "secret"}
CONTROL = {"id": "u-control", "callsign": "Control", "role": "control"}


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def update(**overrides: Any) -> dict[str, Any]:
    base = {"id": "upd-1", "event": "libdempolicing", "visibility": "public", "status": "active", "text": "Photo"}
    return {**base, **overrides}


def rumour(status: str = "unverified", rebuttals: tuple[str, ...] = ()) -> dict[str, Any]:
    """A rumour brought to `status` by the public API's own steps, with one rebuttal per verdict given."""
    r = lc.new_rumour("rum-1", "libdempolicing", "Police snipers on the roofs", None, None, OFFICER, NOW)
    for i, verdict in enumerate(rebuttals):
        r = lc.add_rebuttal(r, verdict, update(id=f"upd-{i}"), OFFICER, at(1 + i), f"/u/{i}")
    if r["status"] != status:
        r = lc.set_status(r, status, CONTROL, at(10))
    return r


# --- creating ---------------------------------------------------------------------------------------------------


def test_new_rumour_starts_unverified_seen_once_with_history() -> None:
    source = {"text": "tweet", "url": "https://t.example/1", "seen_at": "2011-03-12T13:50:00+00:00"}
    r = lc.new_rumour("rum-1", "libdempolicing", "  Police snipers on the roofs ", {"lat": 53.38, "lon": -1.47},
                      source, OFFICER, NOW)
    assert r["claim"] == "Police snipers on the roofs"
    assert r["status"] == "unverified"
    assert r["seq"] is None
    assert (r["sightings"], r["first_seen_at"], r["last_seen_at"]) == (1, "2011-03-12T13:50:00Z", "2011-03-12T13:50:00Z")
    assert r["sources"] == [{"text": "tweet", "url": "https://t.example/1", "seen_at": "2011-03-12T13:50:00Z",
                             "location": None}]
    assert r["rebuttals"] == []
    assert r["history"] == [{"at": "2011-03-12T14:00:00Z", "status": "unverified",
                             "by": {"id": "u-officer", "callsign": "Bravo 2"}}]
    assert r["sightings_last_hour"] == 1 and r["urgency"] > 0


def test_new_rumour_without_source_is_seen_now() -> None:
    r = lc.new_rumour("rum-1", "ev", "Flares on Fargate", None, None, OFFICER, NOW)
    assert r["sources"] == [] and r["first_seen_at"] == "2011-03-12T14:00:00Z" and r["sightings"] == 1


@pytest.mark.parametrize("claim", ["", "   ", "x" * (lc.CLAIM_MAX_CHARS + 1)])
def test_new_rumour_rejects_bad_claims(claim: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        lc.new_rumour("rum-1", "ev", claim, None, None, OFFICER, NOW)
    assert [e["field"] for e in caught.value.errors] == ["claim"]


# --- sightings --------------------------------------------------------------------------------------------------


def test_sighting_counts_and_records_its_source() -> None:
    r = lc.add_sighting(rumour(), {"text": "again", "seen_at": "2011-03-12T15:10:00+01:00"}, at(20))
    assert r["sightings"] == 2
    assert r["sources"][-1] == {"text": "again", "url": None, "seen_at": "2011-03-12T14:10:00Z", "location": None}
    assert r["last_seen_at"] == "2011-03-12T14:10:00Z"
    assert r["_sighting_times"] == ["2011-03-12T14:00:00Z", "2011-03-12T14:10:00Z"]


def test_late_sighting_from_a_queued_handset_moves_first_seen_back() -> None:
    r = lc.add_sighting(rumour(), {"seen_at": "2011-03-12T13:00:00Z"}, at(5))
    assert r["first_seen_at"] == "2011-03-12T13:00:00Z"
    assert r["last_seen_at"] == "2011-03-12T14:00:00Z"
    assert r["_sighting_times"] == sorted(r["_sighting_times"])


def test_sighting_from_the_future_counts_as_now() -> None:
    r = lc.add_sighting(rumour(), {"seen_at": "2011-03-12T18:00:00Z"}, at(5))
    assert r["last_seen_at"] == "2011-03-12T14:05:00Z"


def test_a_report_counts_once() -> None:
    r = lc.add_sighting(rumour(), {"report_id": "rep-1", "text": "heard it"}, at(1))
    assert r["sources"][-1]["report_id"] == "rep-1"
    with pytest.raises(Conflict):
        lc.add_sighting(r, {"report_id": "rep-1"}, at(2))


@pytest.mark.parametrize("seen_at", ["yesterday", "2011-03-12T14:00:00", "2011-13-12T14:00:00Z"])
def test_sighting_time_must_be_rfc3339_with_zone(seen_at: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        lc.add_sighting(rumour(), {"seen_at": seen_at}, NOW)
    assert caught.value.errors[0]["field"] == "seen_at"


# --- status changes by control ----------------------------------------------------------------------------------

TRANSITIONS = [
    # (from status, rebuttal verdicts, to status, outcome)
    ("unverified", (), "investigating", "changed"),
    ("unverified", (), "false", "changed"),
    ("unverified", (), "unverified", "same"),
    ("investigating", (), "unverified", Conflict),
    ("investigating", (), "investigating", "same"),
    ("investigating", (), "misleading", "changed"),
    ("unproven", (), "true", "changed"),  # an unpublished conclusion may be corrected freely
    ("unproven", (), "investigating", "changed"),
    ("unproven", (), "unverified", Conflict),
    ("false", ("false",), "investigating", "changed"),  # withdraws from the board, keeps the rebuttal
    ("false", ("false",), "false", "same"),
    ("false", ("false",), "true", Conflict),  # a published verdict changes only by a new rebuttal
    ("false", ("false",), "unverified", Conflict),
    ("investigating", ("false",), "false", "changed"),  # republishes the withdrawn answer
    ("investigating", ("false",), "misleading", Conflict),
    ("misleading", ("false", "misleading"), "misleading", "same"),
    ("misleading", ("false", "misleading"), "false", Conflict),
]


@pytest.mark.parametrize(("start", "verdicts", "target", "outcome"), TRANSITIONS)
def test_status_transitions(start: str, verdicts: tuple[str, ...], target: str, outcome: Any) -> None:
    before = rumour(start, verdicts)
    assert before["status"] == start
    if outcome is Conflict:
        with pytest.raises(Conflict):
            lc.set_status(before, target, CONTROL, at(30))
        return
    after = lc.set_status(before, target, CONTROL, at(30))
    assert after["status"] == target
    assert after["rebuttals"] == before["rebuttals"]
    if outcome == "same":
        assert after["history"] == before["history"]
    else:
        assert after["history"] == [*before["history"],
                                    {"at": "2011-03-12T14:30:00Z", "status": target,
                                     "by": {"id": "u-control", "callsign": "Control"}}]


@pytest.mark.parametrize(
    ("status", "verdicts", "published"),
    [
        ("unverified", (), False),
        ("investigating", (), False),
        ("false", (), False),  # control's conclusion alone is not an answer to the public
        ("false", ("false",), True),
        ("investigating", ("false",), False),  # withdrawn
        ("true", ("true",), True),
    ],
)
def test_published_verdict_needs_a_verdict_and_a_rebuttal(status: str, verdicts: tuple[str, ...], published: bool) -> None:
    assert lc.has_published_verdict(rumour(status, verdicts)) is published


def test_unknown_status_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        lc.set_status(rumour(), "debunked", CONTROL, NOW)
    assert caught.value.errors[0]["field"] == "status"


# --- rebuttals --------------------------------------------------------------------------------------------------


def test_rebuttal_sets_the_verdict_and_records_who_and_where() -> None:
    r = lc.add_rebuttal(rumour(), "false", update(id="upd-9"), OFFICER, at(3), "/api/v1/updates/upd-9")
    assert r["status"] == "false"
    assert r["rebuttals"] == [{"update_id": "upd-9", "verdict": "false", "url": "/api/v1/updates/upd-9",
                               "at": "2011-03-12T14:03:00Z", "by": {"id": "u-officer", "callsign": "Bravo 2"}}]
    assert r["history"][-1] == {"at": "2011-03-12T14:03:00Z", "status": "false",
                                "by": {"id": "u-officer", "callsign": "Bravo 2"}}
    assert lc.has_published_verdict(r)


@pytest.mark.parametrize("start", ["unverified", "investigating", "true"])
def test_rebuttal_may_answer_from_any_status(start: str) -> None:
    r = lc.add_rebuttal(rumour(start), "misleading", update(), OFFICER, at(40), None)
    assert r["status"] == "misleading"


def test_second_rebuttal_replaces_the_verdict() -> None:
    r = lc.add_rebuttal(rumour("false", ("false",)), "misleading", update(id="upd-2"), OFFICER, at(40), None)
    assert r["status"] == "misleading" and [x["verdict"] for x in r["rebuttals"]] == ["false", "misleading"]


@pytest.mark.parametrize(
    ("verdict", "upd", "fields"),
    [
        ("false", update(visibility="internal"), ["update_id"]),
        ("false", update(status="retracted"), ["update_id"]),
        ("false", update(event="another_event"), ["update_id"]),
        ("false", None, ["update_id"]),
        ("debunked", update(), ["verdict"]),
        ("investigating", update(), ["verdict"]),  # a status, not a verdict
        ("debunked", update(visibility="internal", status="retracted"), ["verdict", "update_id"]),
    ],
)
def test_rebuttal_must_point_at_a_public_active_update_of_the_event(
    verdict: str, upd: dict[str, Any] | None, fields: list[str]
) -> None:
    before = rumour()
    with pytest.raises(ValidationFailed) as caught:
        lc.add_rebuttal(before, verdict, upd, OFFICER, NOW, None)
    assert caught.value.status == 422
    assert [e["field"] for e in caught.value.errors] == fields


def test_the_same_update_answers_a_rumour_once() -> None:
    r = rumour("false", ("false",))
    with pytest.raises(Conflict):
        lc.add_rebuttal(r, "false", update(id="upd-0"), OFFICER, at(40), None)


# --- retraction -------------------------------------------------------------------------------------------------

UNLINKS = [
    # (start, verdicts, retracted update, status after, rebuttal ids left)
    ("false", ("false",), "upd-0", "investigating", []),
    ("misleading", ("false", "misleading"), "upd-1", "false", ["upd-0"]),
    ("misleading", ("false", "misleading"), "upd-0", "misleading", ["upd-1"]),
    ("investigating", ("false",), "upd-0", "investigating", []),  # already withdrawn: stays so
    ("false", ("false",), "upd-other", "false", ["upd-0"]),  # not a rebuttal of this rumour
]


@pytest.mark.parametrize(("start", "verdicts", "retracted", "status", "left"), UNLINKS)
def test_retracting_a_rebuttal_update(
    start: str, verdicts: tuple[str, ...], retracted: str, status: str, left: list[str]
) -> None:
    before = rumour(start, verdicts)
    after = lc.unlink_update(before, retracted, OFFICER, at(50))
    assert after["status"] == status
    assert [r["update_id"] for r in after["rebuttals"]] == left
    if status == start:
        assert after["history"] == before["history"]
    else:
        assert after["history"][-1] == {"at": "2011-03-12T14:50:00Z", "status": status,
                                        "by": {"id": "u-officer", "callsign": "Bravo 2"}}


def test_rumour_left_without_rebuttal_leaves_the_public_board() -> None:
    r = lc.unlink_update(rumour("false", ("false",)), "upd-0", CONTROL, at(50))
    assert not lc.has_published_verdict(r)


# --- purity -----------------------------------------------------------------------------------------------------

OPERATIONS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("sighting", lambda r: lc.add_sighting(r, {"text": "x", "location": {"lat": 1, "lon": 2}}, at(5))),
    ("status", lambda r: lc.set_status(r, "investigating", CONTROL, at(5))),
    ("rebuttal", lambda r: lc.add_rebuttal(r, "true", update(id="upd-new"), OFFICER, at(5), None)),
    ("unlink", lambda r: lc.unlink_update(r, "upd-0", OFFICER, at(5))),
    ("strip", lc.without_internal_fields),
]


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[name for name, _ in OPERATIONS])
def test_operations_never_mutate_their_input(name: str, operation: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    before = rumour("false", ("false",))
    snapshot = copy.deepcopy(before)
    after = operation(before)
    assert before == snapshot
    after["sources"].append({"text": "later edit"})
    after["history"].append({"status": "x"})
    assert before == snapshot


def test_history_names_only_id_and_callsign() -> None:
    r = rumour("false", ("false",))
    assert all(set(h["by"]) == {"id", "callsign"} for h in r["history"])
    assert all(set(x["by"]) == {"id", "callsign"} for x in r["rebuttals"])


def test_internal_fields_are_strippable() -> None:
    r = lc.without_internal_fields(rumour())
    assert not set(lc.INTERNAL_FIELDS) & set(r)
    assert {"id", "seq", "event", "claim", "status", "location", "first_seen_at", "last_seen_at", "sightings",
            "sightings_last_hour", "urgency", "sources", "rebuttals", "history"} == set(r)


def test_format_time_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        lc.format_time(datetime(2011, 3, 12, 14, 0))
