"""Rumours and rebuttals through the HTTP API: the seed's rumours end to end, each lifecycle rule, what the public
may see on every rumour surface, validation, urgency ordering and idempotency."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from answer import ok, problem

from fieldcomms.domain.rumours import public_board
from fieldcomms.keys import SERVICES

TAG = "libdempolicing"
RUMOURS = f"/api/v1/events/{TAG}/rumours"
UPDATES = f"/api/v1/events/{TAG}/updates"
REPORTS = f"/api/v1/events/{TAG}/reports"
SAMPLE_PHOTO = pathlib.Path(__file__).resolve().parents[3] / "shared" / "samples" / "photos" / "DSCN0010.jpg"
ROOF = {"lat": 53.3808, "lon": -1.4703, "accuracy_m": 20}
SNIPERS = "Police snipers on the roofs"
KETTLE = "The demonstration area is a kettle"
FLARES = "Protesters are planning to set off flares on Fargate"

Json = dict[str, Any]


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fields(body: Json) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


async def log_rumour(client: TestClient, token: str, claim: str, tag: str = TAG, **extra: Any) -> Json:
    return await ok(await client.post(f"/api/v1/events/{tag}/rumours", json={"claim": claim, **extra},
                                      headers=auth(token)), 201)


async def post_update(client: TestClient, token: str, text: str, visibility: str = "public", tag: str = TAG) -> Json:
    return await ok(await client.post(f"/api/v1/events/{tag}/updates", json={"text": text, "visibility": visibility},
                                      headers=auth(token)), 201)


async def rebut(client: TestClient, token: str | None, rumour_id: str, **body: Any) -> Any:
    return await client.post(f"/api/v1/rumours/{rumour_id}/rebuttals", json=body, headers=auth(token))


async def get_rumour(client: TestClient, rumour_id: str, token: str | None = None) -> Any:
    return await client.get(f"/api/v1/rumours/{rumour_id}", headers=auth(token))


async def ids(client: TestClient, url: str, token: str | None = None) -> list[str]:
    body = await ok(await client.get(url, headers=auth(token)))
    return [item["id"] for item in body["items"]]


def assert_public_shape(rumour: Json) -> None:
    """What the public must never see of a rumour."""
    assert "sources" not in rumour and "location" not in rumour
    assert all("by" not in h for h in rumour["history"])
    assert all("by" not in r for r in rumour["rebuttals"])
    assert not any(k.startswith("_") for k in rumour)


async def second_event(client: TestClient, control_token: str, tag: str = "otherevent") -> Json:
    return await ok(await client.post("/api/v1/events", json={"tag": tag, "title": "Another", "status": "live"},
                                      headers=auth(control_token)), 201)


async def upload_photo(client: TestClient, token: str) -> Json:
    if SAMPLE_PHOTO.exists():
        data = SAMPLE_PHOTO.read_bytes()
    else:  # the shared samples are missing: a photo made here does as well
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.effect_noise((64, 48), 60).convert("RGB").save(buf, "JPEG")
        data = buf.getvalue()
    form = FormData()
    form.add_field("file", data, filename="roof.jpg", content_type="image/jpeg")
    return await ok(await client.post("/api/v1/photos", data=form, headers=auth(token)), 201)


# --- the seed's rumours, end to end -----------------------------------------------------------------------------


async def test_snipers_logged_sighted_and_rebutted_with_a_photo(
    client: TestClient, officer_token: str, event: Json
) -> None:
    rumour = await log_rumour(client, officer_token, SNIPERS, location=ROOF,
                              source={"text": "tweet from @demo", "url": "https://twitter.example/demo/1",
                                      "seen_at": ago(10)})
    rid = rumour["id"]
    assert rumour["status"] == "unverified" and rumour["sightings"] == 1 and rumour["event"] == TAG
    assert rumour["location"] == {**ROOF, "source": "device"}
    assert rumour["sources"][0]["url"] == "https://twitter.example/demo/1"
    assert rumour["history"][0]["by"]["callsign"] == "officer1"
    assert isinstance(rumour["seq"], int)

    # Not yet answered: the public cannot learn that it exists.
    await problem(await get_rumour(client, rid), 404)
    assert await ids(client, RUMOURS) == []

    for sighting in ({"text": "shouted near Barkers Pool", "location": {"lat": 53.3802, "lon": -1.4707}},
                     {"url": "https://facebook.example/p/2", "seen_at": ago(2)}):
        rumour = await ok(await client.post(f"/api/v1/rumours/{rid}/sightings", json=sighting,
                                            headers=auth(officer_token)), 201)
    assert rumour["sightings"] == 3 and rumour["sightings_last_hour"] == 3
    assert rumour["sources"][1]["location"] == {"lat": 53.3802, "lon": -1.4707, "source": "device"}
    assert rumour["urgency"] > 0

    photo = await upload_photo(client, officer_token)
    resp = await rebut(client, officer_token, rid, verdict="false", photos=[photo["id"]], location=ROOF,
                       text="No snipers: these are our spotters on the roof, photographed just now. #libdempolicing")
    rumour = await ok(resp, 201)
    assert rumour["status"] == "false"
    [rebuttal] = rumour["rebuttals"]
    assert rebuttal["verdict"] == "false" and rebuttal["by"]["callsign"] == "officer1"
    assert rebuttal["url"].endswith(f"/events/{TAG}#update-{rebuttal['update_id']}")

    # The second form posted a new public update of kind info, with the photo, that the public can read.
    update = await ok(await client.get(f"/api/v1/updates/{rebuttal['update_id']}"))
    assert (update["visibility"], update["kind"], update["status"]) == ("public", "info", "active")
    assert [p["id"] for p in update["photos"]] == [photo["id"]]
    assert (await client.get(photo["url"])).status == 200

    public = await ok(await get_rumour(client, rid))
    assert_public_shape(public)
    assert public["status"] == "false" and public["claim"] == SNIPERS and public["sightings"] == 3
    assert [h["status"] for h in public["history"]] == ["unverified", "false"]
    listed = await ok(await client.get(RUMOURS))
    assert [r["id"] for r in listed["items"]] == [rid]
    assert_public_shape(listed["items"][0])

    # Officers still see everything.
    full = await ok(await get_rumour(client, rid, officer_token))
    assert len(full["sources"]) == 3 and full["history"][-1]["by"]["callsign"] == "officer1"

    # What the rumour board page gets.
    [entry] = public_board(client.app[SERVICES], TAG)
    assert entry["rumour"] == public | {"urgency": entry["rumour"]["urgency"]}
    assert entry["rebuttal_update"]["id"] == rebuttal["update_id"]
    review = entry["claim_review"]
    assert review["claimReviewed"] == SNIPERS
    assert review["reviewRating"]["alternateName"] == "False"
    assert review["author"]["name"] == client.app[SERVICES].settings.organisation
    assert review["url"] == rebuttal["url"]
    assert review["image"].endswith(photo["url"])


async def test_kettle_investigated_then_answered_misleading_with_a_public_update(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, KETTLE))["id"]
    investigating = await ok(await client.patch(f"/api/v1/rumours/{rid}", json={"status": "investigating"},
                                                headers=auth(control_token)))
    assert investigating["status"] == "investigating"
    assert investigating["history"][-1]["by"]["callsign"] == "control1"

    update = await post_update(client, officer_token,
                               "The demonstration area on Devonshire Green is a safe area for demonstrating: "
                               "you are free to come and go.")
    rumour = await ok(await rebut(client, officer_token, rid, verdict="misleading", update_id=update["id"]), 201)
    assert rumour["status"] == "misleading"
    assert [h["status"] for h in rumour["history"]] == ["unverified", "investigating", "misleading"]

    public = await ok(await get_rumour(client, rid))
    assert_public_shape(public)
    assert public["status"] == "misleading"
    assert public["rebuttals"] == [{k: v for k, v in rumour["rebuttals"][0].items() if k != "by"}]
    [entry] = public_board(client.app[SERVICES], TAG)
    assert entry["claim_review"]["reviewRating"]["alternateName"] == "Misleading"
    assert entry["rebuttal_update"]["text"] == update["text"]


async def test_flares_reported_by_the_public_matched_and_counted(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    flares = await log_rumour(client, officer_token, FLARES)
    snipers = await log_rumour(client, officer_token, SNIPERS)
    report = await ok(await client.post(REPORTS, json={"text": "heard they'll let off FLARES on fargate later??",
                                                        "contact": "jo.flares@example.org"}), 202)
    assert set(report) == {"id"}
    coffee = await ok(await client.post(REPORTS, json={"text": "the coffee shop on Fargate is giving out free tea"}),
                      202)

    listed = await ok(await client.get(REPORTS, headers=auth(officer_token)))
    by_id = {r["id"]: r for r in listed["items"]}
    matched = [m["rumour_id"] for m in by_id[report["id"]]["matches"]]
    assert matched[0] == flares["id"] and snipers["id"] not in matched
    assert all(0 < m["score"] <= 1 for m in by_id[report["id"]]["matches"])
    assert by_id[coffee["id"]]["matches"] == []
    assert "contact" not in by_id[report["id"]]

    rumour = await ok(await client.post(f"/api/v1/rumours/{flares['id']}/sightings",
                                        json={"report_id": report["id"]}, headers=auth(officer_token)), 201)
    assert rumour["sightings"] == 2
    source = rumour["sources"][-1]
    assert source["report_id"] == report["id"]
    assert source["text"] == "heard they'll let off FLARES on fargate later??"
    assert source["seen_at"] == by_id[report["id"]]["received_at"][:19] + "Z"  # rumours keep whole seconds
    assert "07700" not in str(rumour)

    listed = await ok(await client.get(REPORTS, headers=auth(control_token)))
    counted = {r["id"]: r for r in listed["items"]}[report["id"]]
    assert counted["counted_for"] == [flares["id"]] and counted["contact"] == "jo.flares@example.org"

    # A report counts once per rumour.
    await problem(await client.post(f"/api/v1/rumours/{flares['id']}/sightings", json={"report_id": report["id"]},
                                    headers=auth(officer_token)), 409)
    assert (await ok(await get_rumour(client, flares["id"], officer_token)))["sightings"] == 2


# --- lifecycle rules ---------------------------------------------------------------------------------------------


async def test_a_rebuttal_must_point_at_a_public_active_update_of_the_same_event(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    internal = await post_update(client, officer_token, "Spotters on the town hall roof", visibility="internal")
    retracted = await post_update(client, officer_token, "Those are spotters, not snipers")
    await ok(await client.delete(f"/api/v1/updates/{retracted['id']}", headers=auth(officer_token)))
    await second_event(client, control_token)
    elsewhere = await post_update(client, officer_token, "No snipers here either", tag="otherevent")

    for update_id, reason in ((internal["id"], "public"), (retracted["id"], "active"),
                              (elsewhere["id"], "libdempolicing"), ("upd_nope", "no such update")):
        body = await problem(await rebut(client, officer_token, rid, verdict="false", update_id=update_id), 422)
        assert fields(body) == {"update_id"} and reason in body["errors"][0]["message"], body

    good = await post_update(client, officer_token, "Those are spotters, not snipers: photo shortly")
    body = await problem(await rebut(client, officer_token, rid, verdict="fake", update_id=good["id"]), 422)
    assert fields(body) == {"verdict"}
    body = await problem(await rebut(client, officer_token, rid, verdict="false"), 422)
    assert fields(body) == {"update_id"}
    body = await problem(await rebut(client, officer_token, rid, verdict="false", update_id=good["id"], text="x"), 422)
    assert fields(body) == {"text"}
    body = await problem(await rebut(client, officer_token, rid, verdict="maybe", text=""), 422)
    assert fields(body) == {"verdict", "text"}
    # Nothing was changed, and the failed second-form attempts posted no update.
    rumour = await ok(await get_rumour(client, rid, officer_token))
    assert rumour["status"] == "unverified" and rumour["rebuttals"] == []
    assert len(await ids(client, UPDATES, officer_token)) == 3

    await ok(await rebut(client, officer_token, rid, verdict="false", update_id=good["id"]), 201)
    await problem(await rebut(client, officer_token, rid, verdict="false", update_id=good["id"]), 409)


async def test_retracting_the_rebuttal_unlinks_it_and_the_rumour_leaves_the_public_board(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    update = await post_update(client, officer_token, "Those are spotters, not snipers")
    await ok(await rebut(client, officer_token, rid, verdict="false", update_id=update["id"]), 201)
    assert await ids(client, RUMOURS) == [rid]

    await ok(await client.delete(f"/api/v1/updates/{update['id']}", headers=auth(control_token)))

    rumour = await ok(await get_rumour(client, rid, officer_token))
    assert rumour["rebuttals"] == [] and rumour["status"] == "investigating"
    assert rumour["history"][-1]["status"] == "investigating"
    assert rumour["history"][-1]["by"]["callsign"] == "control1"
    await problem(await get_rumour(client, rid), 404)
    assert await ids(client, RUMOURS) == []
    assert public_board(client.app[SERVICES], TAG) == []


async def test_retracting_the_latest_of_two_rebuttals_falls_back_to_the_earlier_verdict(
    client: TestClient, officer_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    first = await post_update(client, officer_token, "We are still checking the roofs; no sign of snipers")
    second = await post_update(client, officer_token, "Photo: the people on the roof are our spotters")
    await ok(await rebut(client, officer_token, rid, verdict="unproven", update_id=first["id"]), 201)
    await ok(await rebut(client, officer_token, rid, verdict="false", update_id=second["id"]), 201)
    await ok(await client.delete(f"/api/v1/updates/{second['id']}", headers=auth(officer_token)))
    public = await ok(await get_rumour(client, rid))
    assert public["status"] == "unproven" and [r["update_id"] for r in public["rebuttals"]] == [first["id"]]


async def test_status_changes_by_control(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, KETTLE))["id"]
    url = f"/api/v1/rumours/{rid}"
    await problem(await client.patch(url, json={"status": "investigating"}), 401)
    await problem(await client.patch(url, json={"status": "investigating"}, headers=auth(officer_token)), 403)
    await problem(await client.patch("/api/v1/rumours/rum_nope", json={"status": "false"},
                                     headers=auth(control_token)), 404)
    body = await problem(await client.patch(url, json={"status": "kettled"}, headers=auth(control_token)), 422)
    assert fields(body) == {"status"}
    body = await problem(await client.patch(url, json={"status": "false", "claim": "x"},
                                            headers=auth(control_token)), 422)
    assert fields(body) == {"claim"}

    # A verdict without a rebuttal is recorded but publishes nothing.
    rumour = await ok(await client.patch(url, json={"status": "false"}, headers=auth(control_token)))
    assert rumour["status"] == "false"
    await problem(await get_rumour(client, rid), 404)
    assert await ids(client, RUMOURS) == []
    await problem(await client.patch(url, json={"status": "unverified"}, headers=auth(control_token)), 409)

    update = await post_update(client, officer_token, "It is a safe area for demonstrating")
    await ok(await rebut(client, officer_token, rid, verdict="misleading", update_id=update["id"]), 201)
    assert await ids(client, RUMOURS) == [rid]
    # A published verdict changes only through a new rebuttal.
    await problem(await client.patch(url, json={"status": "true"}, headers=auth(control_token)), 409)
    # Setting the current status again changes nothing.
    before = await ok(await get_rumour(client, rid, control_token))
    same = await ok(await client.patch(url, json={"status": "misleading"}, headers=auth(control_token)))
    assert same["seq"] == before["seq"] and len(same["history"]) == len(before["history"])
    # Investigating withdraws the answer from the public board, keeping the rebuttal.
    withdrawn = await ok(await client.patch(url, json={"status": "investigating"}, headers=auth(control_token)))
    assert withdrawn["status"] == "investigating" and len(withdrawn["rebuttals"]) == 1
    await problem(await get_rumour(client, rid), 404)
    assert await ids(client, RUMOURS) == []


async def test_a_closed_event_takes_no_new_rumours_sightings_rebuttals_or_reports(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    update = await post_update(client, officer_token, "Those are spotters")
    await ok(await client.patch(f"/api/v1/events/{TAG}", json={"status": "closed"}, headers=auth(control_token)))
    await problem(await client.post(RUMOURS, json={"claim": KETTLE}, headers=auth(officer_token)), 409)
    await problem(await client.post(f"/api/v1/rumours/{rid}/sightings", json={}, headers=auth(officer_token)), 409)
    await problem(await rebut(client, officer_token, rid, verdict="false", update_id=update["id"]), 409)
    await problem(await rebut(client, officer_token, rid, verdict="false", text="Spotters"), 409)
    await problem(await client.post(REPORTS, json={"text": "snipers!!"}), 409)
    # It can still be read, and control may still change a status.
    assert await ids(client, RUMOURS, officer_token) == [rid]
    await ok(await client.patch(f"/api/v1/rumours/{rid}", json={"status": "investigating"},
                                headers=auth(control_token)))


# --- what each caller may see and do ---------------------------------------------------------------------------


async def test_who_may_do_what(client: TestClient, officer_token: str, event: Json) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    await problem(await client.post(RUMOURS, json={"claim": KETTLE}), 401)
    await problem(await client.post(f"/api/v1/rumours/{rid}/sightings", json={}), 401)
    await problem(await rebut(client, None, rid, verdict="false", text="No"), 401)
    await problem(await client.get("/api/v1/events/nosuchevent/rumours"), 404)
    await problem(await client.post("/api/v1/events/nosuchevent/rumours", json={"claim": KETTLE},
                                    headers=auth(officer_token)), 404)
    await problem(await get_rumour(client, "rum_nope", officer_token), 404)
    await problem(await client.post("/api/v1/rumours/rum_nope/sightings", json={}, headers=auth(officer_token)), 404)


async def test_the_public_list_and_filters(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    published = (await log_rumour(client, officer_token, SNIPERS))["id"]
    update = await post_update(client, officer_token, "Spotters, not snipers")
    await ok(await rebut(client, officer_token, published, verdict="false", update_id=update["id"]), 201)
    unverified = (await log_rumour(client, officer_token, KETTLE))["id"]
    investigating = (await log_rumour(client, officer_token, FLARES))["id"]
    await ok(await client.patch(f"/api/v1/rumours/{investigating}", json={"status": "investigating"},
                                headers=auth(control_token)))

    assert await ids(client, RUMOURS) == [published]
    assert await ids(client, f"{RUMOURS}?status=false") == [published]
    assert await ids(client, f"{RUMOURS}?status=unverified") == []
    assert await ids(client, f"{RUMOURS}?since=0") == [published]
    await problem(await get_rumour(client, unverified), 404)
    await problem(await get_rumour(client, investigating), 404)

    assert set(await ids(client, RUMOURS, officer_token)) == {published, unverified, investigating}
    assert await ids(client, f"{RUMOURS}?status=unverified", officer_token) == [unverified]
    assert await ids(client, f"{RUMOURS}?status=investigating", officer_token) == [investigating]
    body = await problem(await client.get(f"{RUMOURS}?status=rumbling", headers=auth(officer_token)), 422)
    assert fields(body) == {"status"}

    # The public's responses are cacheable, and revalidate.
    resp = await client.get(RUMOURS)
    assert resp.headers["Cache-Control"] == "public, max-age=5"
    again = await client.get(RUMOURS, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_lists_without_since_are_most_urgent_first_and_with_since_oldest_first(
    client: TestClient, officer_token: str, event: Json
) -> None:
    old = (await log_rumour(client, officer_token, KETTLE, source={"text": "heard at noon", "seen_at": ago(120)}))
    new = await log_rumour(client, officer_token, SNIPERS)
    stale = await log_rumour(client, officer_token, FLARES, source={"seen_at": ago(240)})
    assert new["urgency"] > old["urgency"] > stale["urgency"]
    assert await ids(client, RUMOURS, officer_token) == [new["id"], old["id"], stale["id"]]

    # More recent sightings make the old rumour the most urgent.
    for _ in range(2):
        rumour = await ok(await client.post(f"/api/v1/rumours/{old['id']}/sightings", json={"text": "again"},
                                            headers=auth(officer_token)), 201)
    assert rumour["sightings_last_hour"] == 2
    listed = await ok(await client.get(RUMOURS, headers=auth(officer_token)))
    assert [r["id"] for r in listed["items"]] == [old["id"], new["id"], stale["id"]]
    assert [r["urgency"] for r in listed["items"]] == sorted((r["urgency"] for r in listed["items"]), reverse=True)
    assert listed["last_seq"] >= rumour["seq"]

    # With since: by seq, oldest first, and only what changed after it.
    assert await ids(client, f"{RUMOURS}?since=0", officer_token) == [new["id"], stale["id"], old["id"]]
    assert await ids(client, f"{RUMOURS}?since={new['seq']}", officer_token) == [stale["id"], old["id"]]
    page = await ok(await client.get(f"{RUMOURS}?since=0&limit=1", headers=auth(officer_token)))
    assert page["last_seq"] == new["seq"]
    assert await ids(client, f"{RUMOURS}?limit=2", officer_token) == [old["id"], new["id"]]


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ({}, {"claim"}),
    ({"claim": "   "}, {"claim"}),
    ({"claim": "x" * 501}, {"claim"}),
    ({"claim": 7}, {"claim"}),
    ({"claim": SNIPERS, "location": {"lat": 91, "lon": 0}}, {"location.lat"}),
    ({"claim": SNIPERS, "location": {"lat": 53, "lon": "west"}}, {"location.lon"}),
    ({"claim": SNIPERS, "source": {"url": "ftp://example.com/x"}}, {"source.url"}),
    ({"claim": SNIPERS, "source": {"url": "javascript:alert(1)"}}, {"source.url"}),
    ({"claim": SNIPERS, "source": {"seen_at": "yesterday"}}, {"source.seen_at"}),
    ({"claim": SNIPERS, "source": {"text": ""}}, {"source.text"}),
    ({"claim": SNIPERS, "source": "twitter"}, {"source"}),
    ({"claim": SNIPERS, "source": {"who": "me"}}, {"source.who"}),
    ({"claim": SNIPERS, "status": "false"}, {"status"}),
    ({"claim": "", "location": {"lat": 0}, "source": {"url": "x"}}, {"claim", "location.lon", "source.url"}),
])
async def test_rumour_create_names_every_bad_field(
    client: TestClient, officer_token: str, event: Json, body: Json, expected: set[str]
) -> None:
    assert fields(await problem(await client.post(RUMOURS, json=body, headers=auth(officer_token)), 422)) == expected


@pytest.mark.parametrize(("body", "expected"), [
    ({"url": "mailto:someone@example.com"}, {"url"}),
    ({"seen_at": "2011-03-12T14:05:00"}, {"seen_at"}),
    ({"location": [53, -1]}, {"location"}),
    ({"text": "y" * 2001}, {"text"}),
    ({"report_id": "rep_x", "text": "also this"}, {"text"}),
    ({"report_id": 5}, {"report_id"}),
    ({"report_id": "rep_unknown"}, {"report_id"}),
    ({"seen": "now"}, {"seen"}),
])
async def test_sightings_are_validated(
    client: TestClient, officer_token: str, event: Json, body: Json, expected: set[str]
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    resp = await client.post(f"/api/v1/rumours/{rid}/sightings", json=body, headers=auth(officer_token))
    assert fields(await problem(resp, 422)) == expected


async def test_a_sighting_times_are_normalised_and_a_future_one_counts_as_now(
    client: TestClient, officer_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    rumour = await ok(await client.post(f"/api/v1/rumours/{rid}/sightings", json={"seen_at": "2011-03-12T15:05:00+01:00"},
                                        headers=auth(officer_token)), 201)
    assert rumour["sources"][-1]["seen_at"] == "2011-03-12T14:05:00Z"
    assert rumour["first_seen_at"] == "2011-03-12T14:05:00Z"
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rumour = await ok(await client.post(f"/api/v1/rumours/{rid}/sightings", json={"seen_at": future},
                                        headers=auth(officer_token)), 201)
    assert rumour["last_seen_at"] < future


async def test_a_report_of_another_event_is_not_a_sighting(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    await second_event(client, control_token)
    report = await ok(await client.post("/api/v1/events/otherevent/reports", json={"text": "snipers on the roofs"}),
                      202)
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    body = await problem(await client.post(f"/api/v1/rumours/{rid}/sightings", json={"report_id": report["id"]},
                                           headers=auth(officer_token)), 422)
    assert fields(body) == {"report_id"}


async def test_a_second_form_rebuttal_with_an_unknown_photo_posts_nothing(
    client: TestClient, officer_token: str, event: Json
) -> None:
    rid = (await log_rumour(client, officer_token, SNIPERS))["id"]
    body = await problem(await rebut(client, officer_token, rid, verdict="false", text="Spotters", photos=["nope"]),
                         422)
    assert fields(body) == {"photos[0]"}
    assert await ids(client, UPDATES, officer_token) == []


# --- idempotency -----------------------------------------------------------------------------------------------


async def test_rumour_create_and_sightings_honour_idempotency_keys(
    client: TestClient, officer_token: str, user_factory: Any, event: Json
) -> None:
    headers = {**auth(officer_token), "Idempotency-Key": "handset-42-rumour-1"}
    first = await client.post(RUMOURS, json={"claim": SNIPERS}, headers=headers)
    again = await client.post(RUMOURS, json={"claim": SNIPERS}, headers=headers)
    assert first.status == again.status == 201
    assert (await first.json()) == (await again.json())
    assert len(await ids(client, RUMOURS, officer_token)) == 1
    body = await problem(await client.post(RUMOURS, json={"claim": KETTLE}, headers=headers), 422)
    assert fields(body) == {"Idempotency-Key"}
    # Keys belong to their caller.
    other = await user_factory("officer", "officer2")
    await ok(await client.post(RUMOURS, json={"claim": SNIPERS},
                               headers={**auth(other), "Idempotency-Key": "handset-42-rumour-1"}), 201)
    assert len(await ids(client, RUMOURS, officer_token)) == 2

    rid = (await first.json())["id"]
    key = {**auth(officer_token), "Idempotency-Key": "sighting-1"}
    for _ in range(2):
        rumour = await ok(await client.post(f"/api/v1/rumours/{rid}/sightings", json={"text": "x"}, headers=key), 201)
    assert rumour["sightings"] == 2


async def test_the_openapi_document_describes_every_rumour_route(client: TestClient) -> None:
    doc = await ok(await client.get("/api/v1/openapi.json"))
    paths = doc["paths"]
    assert set(paths["/api/v1/events/{tag}/rumours"]) == {"get", "post"}
    assert set(paths["/api/v1/rumours/{id}"]) == {"get", "patch"}
    assert "post" in paths["/api/v1/rumours/{id}/sightings"] and "post" in paths["/api/v1/rumours/{id}/rebuttals"]
    assert "half" in paths["/api/v1/events/{tag}/rumours"]["get"]["description"]
    for name in ("Rumour", "RumourCreate", "Sighting", "Rebuttal", "Report", "ReportCreate"):
        assert name in doc["components"]["schemas"]
