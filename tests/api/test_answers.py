"""A second pair of eyes before an answer goes public: pending answers, approval by another control user, checks
that need `confirm_legal`, rejection; and that nothing pending reaches a public surface (rumour, list, board page,
feeds, stream) or changes a public ETag."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from answer import ok, problem
from conftest import auth, make_user
from sse import SSEReader

Json = dict[str, Any]
TAG = "approvals"
RUMOURS = f"/api/v1/events/{TAG}/rumours"
UPDATES = f"/api/v1/events/{TAG}/updates"


@pytest.fixture
async def desk(client: TestClient) -> dict[str, str]:
    tokens = {who: await make_user(client.app, role, who.upper())
              for who, role in (("control", "control"), ("second", "control"), ("officer", "officer"))}
    await ok(await client.post("/api/v1/events", json={"tag": TAG, "title": "Approvals", "status": "live",
                                                        "answer_approval": "second-control"},
                               headers=auth(tokens["control"])), 201)
    return tokens


async def log_rumour(client: TestClient, token: str, claim: str) -> Json:
    return await ok(await client.post(RUMOURS, json={"claim": claim}, headers=auth(token)), 201)


LAST_SEQ = re.compile(rb'"last_seq":\d+|data-last-seq="\d+"')


async def public_surfaces(client: TestClient, rumour_id: str) -> dict[str, tuple[int, str, bytes]]:
    """Status, ETag and body of every public surface a rumour could show on. The rumour, its board and the feed
    must not change at all (ETag included). Lists and the event page carry the deployment's newest seq
    (`last_seq`, where a client continues from), which every stored change moves, an internal update as much
    as a pending answer; it is taken out of those before comparing, and so is their ETag."""
    out = {}
    for url in (f"/api/v1/rumours/{rumour_id}", f"/events/{TAG}/rumours", f"/events/{TAG}/feed.atom"):
        resp = await client.get(url)
        out[url] = (resp.status, resp.headers.get("ETag", ""), await resp.read())
    for url in (f"/events/{TAG}", f"{RUMOURS}?status=false", RUMOURS, f"/api/v1/events/{TAG}/updates"):
        resp = await client.get(url)
        out[url] = (resp.status, "", LAST_SEQ.sub(b"", await resp.read()))
    return out


async def test_the_event_field_defaults_from_the_setting_and_is_validated(client: TestClient,
                                                                         desk: dict[str, str]) -> None:
    control = auth(desk["control"])
    event = await ok(await client.get(f"/api/v1/events/{TAG}"))
    assert event["answer_approval"] == "second-control"
    other = await ok(await client.post("/api/v1/events", json={"tag": "other", "title": "Other"}, headers=control),
                     201)
    assert other["answer_approval"] == "none"
    body = await problem(await client.post("/api/v1/events", json={"tag": "bad", "title": "Bad",
                                                                    "answer_approval": "maybe"},
                                           headers=control), 422)
    assert [e["field"] for e in body["errors"]] == ["answer_approval"]
    patched = await ok(await client.patch("/api/v1/events/other", json={"answer_approval": "second-control"},
                                          headers=control))
    assert patched["answer_approval"] == "second-control"
    await problem(await client.patch("/api/v1/events/other", json={"answer_approval": None}, headers=control), 422)


async def test_a_second_form_answer_waits_unseen_then_is_published_by_a_second_control_user(
        client: TestClient, desk: dict[str, str]) -> None:
    officer, control, second = (auth(desk[w]) for w in ("officer", "control", "second"))
    rumour = await log_rumour(client, desk["officer"], "Police snipers on the roofs")
    # Answered once already? No: first it is on no public surface at all; capture the surfaces as they are.
    before = await public_surfaces(client, rumour["id"])
    assert before[f"/api/v1/rumours/{rumour['id']}"][0] == 404

    proposed = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "text": "No snipers: the roof, photographed just now by PC 12.",
        "checks": {"names_person": True}}, headers={**officer, "Idempotency-Key": "answer-1"}), 201)
    pending = proposed["pending_answer"]
    assert proposed["status"] == "unverified" and proposed["rebuttals"] == []
    assert pending["verdict"] == "false" and pending["proposed_by"]["callsign"] == "OFFICER"
    assert pending["checks"] == {"names_person": True, "mentions_minor": False, "active_proceedings": False}
    assert proposed["seq"] == rumour["seq"], "proposing must not change the stored rumour"
    update = await ok(await client.get(f"/api/v1/updates/{pending['update_id']}", headers=officer))
    assert update["visibility"] == "internal"
    assert (await client.get(f"/api/v1/updates/{pending['update_id']}")).status == 404
    assert await public_surfaces(client, rumour["id"]) == before, "a pending answer changed a public surface"
    # A repeat with the same key answers the same, creating nothing.
    again = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "text": "No snipers: the roof, photographed just now by PC 12.",
        "checks": {"names_person": True}}, headers={**officer, "Idempotency-Key": "answer-1"}), 201)
    assert again == proposed
    # One pending answer at a time.
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "true", "update_id": pending["update_id"]}, headers=control), 409)
    # Officers see it pending; control too, in the list.
    listed = await ok(await client.get(RUMOURS, headers=control))
    assert listed["items"][0]["pending_answer"]["update_id"] == pending["update_id"]

    # An officer may not approve; a flagged check needs confirm_legal.
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", json={}, headers=officer), 403)
    body = await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", json={},
                                           headers=second), 422)
    assert [e["field"] for e in body["errors"]] == ["confirm_legal"]
    assert await public_surfaces(client, rumour["id"]) == before

    approved = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve",
                                          json={"confirm_legal": True}, headers=second))
    assert approved["status"] == "false" and "pending_answer" not in approved
    assert approved["rebuttals"][0]["update_id"] == pending["update_id"]
    assert approved["rebuttals"][0]["by"]["callsign"] == "OFFICER"
    status_entry = [h for h in approved["history"] if h["status"] == "false" and "action" not in h]
    assert status_entry[0]["by"]["callsign"] == "SECOND"
    actions = [h for h in approved["history"] if h.get("action")]
    assert [(h["action"], h["by"]["callsign"]) for h in actions] == [("answer-approved", "SECOND")]
    # Now public: the update, the rumour (without the desk's history), the board.
    assert (await ok(await client.get(f"/api/v1/updates/{pending['update_id']}")))["visibility"] == "public"
    public = await ok(await client.get(f"/api/v1/rumours/{rumour['id']}"))
    assert public["status"] == "false" and "pending_answer" not in public
    assert all("action" not in h and "by" not in h for h in public["history"])
    board = await (await client.get(f"/events/{TAG}/rumours")).text()
    assert "Police snipers on the roofs" in board and "photographed just now" in board
    # Nothing is pending any more.
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve",
                                    json={"confirm_legal": True}, headers=control), 409)


async def test_the_proposer_cannot_approve_and_a_rejected_answer_stays_internal(
        client: TestClient, desk: dict[str, str]) -> None:
    control, second, officer = auth(desk["control"]), auth(desk["second"]), auth(desk["officer"])
    rumour = await log_rumour(client, desk["officer"], "A child was hurt at the gate")
    before = await public_surfaces(client, rumour["id"])
    proposed = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "text": "Nobody was hurt at the gate."}, headers=control), 201)
    update_id = proposed["pending_answer"]["update_id"]
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", headers=control), 403)
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject", json={}, headers=second), 422)
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject", json={"reason": "no"},
                                    headers=officer), 403)
    rejected = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject",
                                          json={"reason": "Not confirmed by the ambulance service yet"},
                                          headers=second))
    assert "pending_answer" not in rejected and rejected["status"] == "unverified"
    entry = [h for h in rejected["history"] if h.get("action")][-1]
    assert entry["action"] == "answer-rejected" and entry["by"]["callsign"] == "SECOND"
    assert entry["reason"] == "Not confirmed by the ambulance service yet"
    assert (await ok(await client.get(f"/api/v1/updates/{update_id}", headers=officer)))["visibility"] == "internal"
    assert (await client.get(f"/api/v1/updates/{update_id}")).status == 404
    assert await public_surfaces(client, rumour["id"]) == before
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject", json={"reason": "again"},
                                    headers=second), 409)
    # Officers read the same history (it is not control-only), without the public seeing any of it.
    seen = await ok(await client.get(f"/api/v1/rumours/{rumour['id']}", headers=officer))
    assert [h.get("action") for h in seen["history"] if h.get("action")] == ["answer-rejected"]


async def test_an_answer_to_a_published_rumour_changes_nothing_public_until_approved(
        client: TestClient, desk: dict[str, str]) -> None:
    """A rumour already on the board gets a new proposed verdict: its public copy, ETag and the public stream stay
    exactly as they were, and a retracted pending update cannot be approved."""
    control, second, officer = auth(desk["control"]), auth(desk["second"]), auth(desk["officer"])
    rumour = await log_rumour(client, desk["officer"], "The march is cancelled")
    first = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "text": "The march goes ahead at noon."}, headers=officer), 201)
    await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", headers=second))
    assert first["pending_answer"]["verdict"] == "false"
    before = await public_surfaces(client, rumour["id"])
    assert before[f"/api/v1/rumours/{rumour['id']}"][0] == 200
    seq_now = (await ok(await client.get("/healthz")))["seq"]

    stream = await client.get(f"/api/v1/events/{TAG}/stream?since={seq_now}")
    staff_stream = await client.get(f"/api/v1/events/{TAG}/stream?since={seq_now}", headers=control)
    proposed = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "misleading", "text": "It starts later than planned, at 1 pm.",
        "checks": {"active_proceedings": True}}, headers=officer), 201)
    update_id = proposed["pending_answer"]["update_id"]
    staff_reader = SSEReader(staff_stream.content)
    seen = []
    while len(seen) < 2:  # the internal update, then the rumour with its pending answer
        event = await staff_reader.next(within=5)
        assert event is not None
        seen.append((event.type, event.json()))
    assert seen[-1][0] == "rumour" and seen[-1][1]["pending_answer"]["verdict"] == "misleading"
    public_reader = SSEReader(stream.content)
    with pytest.raises(TimeoutError):
        await public_reader.next(within=0.5)
    assert await public_surfaces(client, rumour["id"]) == before

    await ok(await client.delete(f"/api/v1/updates/{update_id}", headers=officer))
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve",
                                    json={"confirm_legal": True}, headers=second), 409)
    await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject",
                               json={"reason": "Its update was retracted"}, headers=second))
    with pytest.raises(TimeoutError):
        await public_reader.next(within=0.5)
    assert (await ok(await client.get(f"/api/v1/rumours/{rumour['id']}")))["status"] == "false"
    stream.close()
    staff_stream.close()


async def test_a_first_form_answer_and_events_without_approval(client: TestClient, desk: dict[str, str]) -> None:
    control, second, officer = auth(desk["control"]), auth(desk["second"]), auth(desk["officer"])
    rumour = await log_rumour(client, desk["officer"], "Fargate is closed")
    update = await ok(await client.post(UPDATES, json={"text": "Fargate is open.", "visibility": "public"},
                                        headers=officer), 201)
    internal = await ok(await client.post(UPDATES, json={"text": "Fargate: checking"}, headers=officer), 201)
    body = await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "update_id": internal["id"]}, headers=officer), 422)
    assert [e["field"] for e in body["errors"]] == ["update_id"]
    await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "update_id": update["id"]}, headers=officer), 201)
    assert (await client.get(f"/api/v1/rumours/{rumour['id']}")).status == 404
    approved = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", data=b"",
                                          headers=control))
    assert approved["status"] == "false"
    assert (await ok(await client.get(f"/api/v1/rumours/{rumour['id']}")))["rebuttals"][0]["update_id"] == update["id"]
    # Nothing pending, nothing to reject; an unknown rumour is 404.
    await problem(await client.post(f"/api/v1/rumours/{rumour['id']}/answer/reject", json={"reason": "x"},
                                    headers=second), 409)
    await problem(await client.post("/api/v1/rumours/rum_nope/answer/approve", headers=second), 404)

    # With approval switched off, an answer is public at once and the endpoints have nothing to do.
    await ok(await client.patch(f"/api/v1/events/{TAG}", json={"answer_approval": "none"}, headers=control))
    other = await log_rumour(client, desk["officer"], "Trains are cancelled")
    out = await ok(await client.post(f"/api/v1/rumours/{other['id']}/rebuttals", json={
        "verdict": "false", "text": "Trains run normally.", "checks": {"mentions_minor": True}}, headers=officer), 201)
    assert out["status"] == "false" and "pending_answer" not in out
    assert (await client.get(f"/api/v1/rumours/{other['id']}")).status == 200
    await problem(await client.post(f"/api/v1/rumours/{other['id']}/answer/approve", headers=second), 409)


async def test_two_approvals_at_once_publish_once(client: TestClient, desk: dict[str, str]) -> None:
    control, second = auth(desk["control"]), auth(desk["second"])
    third = auth(await make_user(client.app, "control", "THIRD"))
    rumour = await log_rumour(client, desk["officer"], "Shops are being looted")
    await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
        "verdict": "false", "text": "No shop has been looted."}, headers=auth(desk["officer"])), 201)
    answers = await asyncio.gather(*(client.post(f"/api/v1/rumours/{rumour['id']}/answer/approve", headers=h)
                                     for h in (control, second, third)))
    assert sorted(r.status for r in answers) == [200, 409, 409]
    final = await ok(await client.get(f"/api/v1/rumours/{rumour['id']}", headers=control))
    assert len(final["rebuttals"]) == 1
    assert len([h for h in final["history"] if h.get("action") == "answer-approved"]) == 1
