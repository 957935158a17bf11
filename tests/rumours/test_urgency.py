"""Urgency: rises with recent sightings, halves every half-life, sinks once a verdict is published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldcomms.rumours import lifecycle as lc
from fieldcomms.rumours import urgency as ur

NOW = datetime(2011, 3, 12, 14, 0, tzinfo=UTC)
OFFICER = {"id": "u1", "callsign": "Bravo 2"}
PUBLIC_UPDATE = {"id": "upd-1", "event": "ev", "visibility": "public", "status": "active"}


def stamp(minutes_ago: float) -> str:
    return lc.format_time(NOW - timedelta(minutes=minutes_ago))


def seen(*minutes_ago: float, status: str = "investigating", rid: str = "r", **extra: Any) -> dict[str, Any]:
    """A rumour with sightings the given minutes before NOW."""
    times = sorted(stamp(m) for m in minutes_ago)
    return {"id": rid, "status": status, "rebuttals": [], "_sighting_times": times, "sightings": len(times),
            "last_seen_at": times[-1], **extra}


def test_a_fresh_sighting_counts_one() -> None:
    assert ur.urgency(seen(0), NOW) == 1.0


@pytest.mark.parametrize(("age", "expected"), [(0, 1.0), (30, 0.5), (60, 0.25), (90, 0.125), (120, 0.062)])
def test_a_single_sighting_halves_every_half_life(age: float, expected: float) -> None:
    assert ur.urgency(seen(age), NOW) == expected


@given(st.floats(min_value=0, max_value=600), st.floats(min_value=1, max_value=240))
def test_one_half_life_later_a_sighting_is_worth_exactly_half(age: float, half_life: float) -> None:
    r = seen(0)
    sighting = datetime.fromisoformat(r["_sighting_times"][0])
    earlier = ur.urgency(r, sighting + timedelta(minutes=age), half_life)
    later = ur.urgency(r, sighting + timedelta(minutes=age + half_life), half_life)
    assert later == pytest.approx(earlier / 2, abs=0.001)


def test_half_life_is_configurable() -> None:
    assert ur.urgency(seen(10), NOW, half_life_minutes=10) == 0.5
    with pytest.raises(ValueError):
        ur.urgency(seen(10), NOW, half_life_minutes=0)


def test_each_recent_sighting_raises_urgency() -> None:
    values = [ur.urgency(seen(*[1] * n), NOW) for n in range(1, 6)]
    assert values == sorted(values) and len(set(values)) == 5


def test_a_rumour_spreading_now_outranks_one_that_was_everywhere_this_morning() -> None:
    assert ur.urgency(seen(2, 5), NOW) > ur.urgency(seen(180, 185, 190, 200, 210, 220), NOW)


def test_sightings_stamped_in_the_future_count_as_now() -> None:
    assert ur.urgency(seen(-60), NOW) == 1.0


def test_unverified_gets_a_small_bonus_over_investigating() -> None:
    assert ur.urgency(seen(0, status="unverified"), NOW) == 1.2
    assert ur.urgency(seen(0, status="investigating"), NOW) == 1.0


def test_urgency_drops_sharply_once_a_verdict_is_published() -> None:
    busy = [0, 1, 2, 3]
    unpublished = seen(*busy, status="false")  # control's conclusion, not yet answered in public
    published = seen(*busy, status="false", rebuttals=[{"update_id": "u", "verdict": "false"}])
    assert ur.urgency(unpublished, NOW) == pytest.approx(ur.urgency(seen(*busy), NOW))
    assert ur.urgency(published, NOW) == pytest.approx(ur.urgency(unpublished, NOW) * 0.1, abs=0.001)


def test_rebuttal_through_the_lifecycle_drops_urgency() -> None:
    r = lc.new_rumour("r", "ev", "Snipers on the roofs", None, None, OFFICER, NOW)
    for minute in range(1, 5):
        r = lc.add_sighting(r, {}, NOW + timedelta(minutes=minute))
    before = r["urgency"]
    answered = lc.add_rebuttal(r, "false", {**PUBLIC_UPDATE}, OFFICER, NOW + timedelta(minutes=5), None)
    assert answered["urgency"] < before / 5
    retracted = lc.unlink_update(answered, "upd-1", OFFICER, NOW + timedelta(minutes=5))
    assert retracted["urgency"] > answered["urgency"]


def test_sightings_last_hour() -> None:
    r = seen(0, 10, 59, 61, 300)
    assert ur.sightings_last_hour(r, NOW) == 3
    assert ur.sightings_last_hour(r, NOW + timedelta(hours=5)) == 0


def test_refresh_sets_the_derived_fields_without_touching_the_input() -> None:
    r = seen(0, 30, sightings_last_hour=0, urgency=0.0)
    fresh = ur.refresh(r, NOW)
    assert (fresh["sightings_last_hour"], fresh["urgency"]) == (2, 1.5)
    assert (r["sightings_last_hour"], r["urgency"]) == (0, 0.0)


def test_a_rumour_without_sighting_times_falls_back_to_last_seen() -> None:
    r = {"id": "r", "status": "investigating", "rebuttals": [], "sightings": 2, "last_seen_at": stamp(30)}
    assert ur.urgency(r, NOW) == 1.0


def test_sort_by_urgency_most_urgent_first() -> None:
    rumours = [
        seen(120, rid="old"),
        seen(0, 0, rid="hot"),
        seen(0, 0, 0, status="false", rebuttals=[{"update_id": "u"}], rid="answered"),
        seen(0, rid="warm"),
    ]
    ordered = ur.sort_by_urgency(rumours, NOW)
    assert [r["id"] for r in ordered] == ["hot", "warm", "answered", "old"]
    assert [r["urgency"] for r in ordered] == [2.0, 1.0, 0.3, 0.062]


def test_ties_go_to_the_most_recently_seen() -> None:
    # Equal urgency (both sums are 1.0), different last sightings.
    a = seen(30, 30, rid="a")
    b = seen(60, 60, 60, 60, rid="b")
    b["_sighting_times"] = [stamp(60)] * 4
    a["last_seen_at"], b["last_seen_at"] = stamp(30), stamp(5)
    assert ur.urgency(a, NOW) == ur.urgency(b, NOW) == 1.0
    assert [r["id"] for r in ur.sort_by_urgency([a, b], NOW)] == ["b", "a"]
    twin = {**a, "id": "0"}
    assert [r["id"] for r in ur.sort_by_urgency([a, twin], NOW)] == ["0", "a"]


def test_the_published_description_states_the_numbers() -> None:
    text = ur.URGENCY_DESCRIPTION
    for fragment in ("0.5 ^ (age_i / 30)", "1.2", "0.1", "sightings_last_hour", "last_seen_at"):
        assert fragment in text
