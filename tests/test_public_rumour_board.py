"""The public rumour board costs the size of the board, not of the event's rumours (issue 15, item 7): the
rumours page, the event page's verdicts and the public rumour list walk only rumours with a published verdict
(public_index.PublicRumours), and show exactly what they showed before (the timing: `make bench BENCH=abuse`,
`public_rumour_board_p99_ms`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fieldcomms.domain.rumours import public_board
from fieldcomms.keys import SERVICES
from tests.conftest import auth
from tests.workcount import count_work

TAG = "libdempolicing"
QUIET = 150  # rumours never answered in public


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each rumour a read takes through visibility, and each item it walks through in seq order."""
    return count_work(monkeypatch, "rumours")


async def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _answer(client: TestClient, token: str, rumour_id: str, text: str) -> dict[str, Any]:
    update = await _ok(await client.post(f"/api/v1/events/{TAG}/updates", headers=auth(token),
                                         json={"text": text, "visibility": "public"}), 201)
    await _ok(await client.post(f"/api/v1/rumours/{rumour_id}/rebuttals", headers=auth(token),
                                json={"verdict": "false", "update_id": update["id"]}), 201)
    return update  # type: ignore[no-any-return]


async def test_the_board_walks_only_answered_rumours(client: TestClient, officer_token: str, control_token: str,
                                                     event: dict[str, Any], counted: list[int]) -> None:
    url = f"/api/v1/events/{TAG}/rumours"
    rumours = []
    for i in range(QUIET + 3):
        rumours.append(await _ok(await client.post(url, headers=auth(officer_token),
                                                   json={"claim": f"claim number {i} about Fargate"}), 201))
    answered = [rumours[10], rumours[70], rumours[140]]
    updates = [await _answer(client, officer_token, r["id"], f"Not so: {r['claim']}") for r in answered]
    # one leaves the board again (its only rebuttal retracted), and one comes back on it with a new answer
    await _ok(await client.delete(f"/api/v1/updates/{updates[1]['id']}", headers=auth(control_token)))
    await _answer(client, officer_token, rumours[10]["id"], "Still not so")
    on_board = {answered[0]["id"], answered[2]["id"]}

    async def cost(path: str) -> tuple[int, Any]:
        counted[0] = 0
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
        return counted[0], await resp.json() if "json" in resp.content_type else await resp.text()

    calls, body = await cost(url)
    assert {item["id"] for item in body["items"]} == on_board and calls <= 12, calls
    calls, body = await cost(f"{url}?since=0")
    assert {item["id"] for item in body["items"]} == on_board and calls <= 12, calls
    calls, page = await cost(f"/events/{TAG}/rumours")
    assert all(r["claim"] in page for r in (answered[0], answered[2])) and answered[1]["claim"] not in page
    assert calls <= 12, calls
    calls, page = await cost(f"/events/{TAG}")
    assert calls <= 12, calls  # the verdicts beside the feed (its updates are counted in test_public_cost)

    counted[0] = 0
    board = public_board(client.app[SERVICES], TAG)
    assert [entry["rumour"]["id"] for entry in board] == [answered[0]["id"], answered[2]["id"]]  # newest answer first
    # staff still see every rumour: their list is not the board
    body = await _ok(await client.get(f"{url}?limit=500", headers=auth(officer_token)))
    assert len(body["items"]) == QUIET + 3


async def test_the_board_index_is_rebuilt_when_the_store_loads(tmp_path: Path) -> None:
    """From the journal, and from a snapshot: the same rumours on the board, in seq order."""
    from datetime import UTC, datetime

    from fieldcomms.domain.public_index import PublicRumours
    from fieldcomms.rumours import lifecycle
    from fieldcomms.store import Store

    by, now = {"id": "usr_o", "callsign": "o1"}, datetime.now(UTC)
    update = {"id": "upd_1", "event": TAG, "visibility": "public", "status": "active", "text": "no"}

    async def board(snapshot: bool) -> list[str]:
        store = Store(tmp_path, fsync=False)
        index = PublicRumours(store)
        await store.open()
        ids = [doc["id"] for doc in index.newest_first(TAG)]
        await store.close(snapshot=snapshot)
        return ids

    store = Store(tmp_path, fsync=False)
    await store.open()
    stored = await store.append("update", "updates", update)
    rumours = []
    for i in range(6):
        rumour = lifecycle.new_rumour(f"rum_{i}", TAG, f"claim {i}", None, None, by, now)
        if i % 2:
            rumour = lifecycle.add_rebuttal(rumour, "false", stored, by, now, None)
        rumours.append(await store.append("rumour", "rumours", rumour))
    # rum_1 leaves the board, then rum_3 is changed again while on it
    await store.append("rumour", "rumours", lifecycle.unlink_update(rumours[1], "upd_1", by, now))
    await store.append("rumour", "rumours", lifecycle.add_sighting(rumours[3], {"text": "again"}, now))
    await store.close(snapshot=False)
    assert await board(snapshot=True) == ["rum_3", "rum_5"]  # from the journal (then a snapshot is written)
    assert await board(snapshot=False) == ["rum_3", "rum_5"]  # from that snapshot
