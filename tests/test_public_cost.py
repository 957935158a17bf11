"""Public reads cost about the size of their answer, not of the event (issue 15, item 7).

The work is counted where every read must pass: the visibility rule for updates, and each item a read walks
through in seq order. An event with many internal
updates and many public ones of another kind must not make a filtered list, a tiny box, the event page,
`alerts.atom` or the map without `zoom` look at all of them (the timings are in `make bench BENCH=abuse`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user
from tests.workcount import count_work

TAG = "libdempolicing"
INTERNAL, PUBLIC = 1200, 800
WARNINGS = 4
FAR_AWAY = {"lat": 53.4000, "lon": -1.5200}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_work(monkeypatch, "updates")


async def test_public_reads_cost_the_size_of_their_answer(aiohttp_client, tmp_path: Path,
                                                          counted: list[int]) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False, cluster_above=50))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    url = f"/api/v1/events/{TAG}/updates"
    for i in range(WARNINGS):
        await client.post(url, headers=auth(officer), json={"text": f"warning {i}", "visibility": "public",
                                                            "kind": "warning", "location": FAR_AWAY})
    for i in range(PUBLIC):
        await client.post(url, headers=auth(officer), json={
            "text": f"public {i}", "visibility": "public",
            "location": {"lat": 53.38 + (i % 40) * 1e-4, "lon": -1.47 + (i // 40) * 1e-4}})
    for i in range(INTERNAL):
        await client.post(url, headers=auth(officer), json={"text": f"internal {i}", "location": FAR_AWAY})

    async def cost(path: str) -> tuple[int, Any]:
        counted[0] = 0
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
        body = await resp.json() if "json" in resp.content_type else await resp.text()
        return counted[0], body

    # The map's point index is built once per event (at start, or at its first use): not a per-request cost.
    assert (await client.get(f"/api/v1/events/{TAG}/map?layers=updates&zoom=3")).status == 200

    calls, body = await cost(f"{url}?kind=warning")
    assert len(body["items"]) == WARNINGS and calls <= 4 * WARNINGS + 10, calls
    calls, body = await cost(f"{url}?visibility=internal")
    assert body["items"] == [] and calls <= 10, calls
    calls, body = await cost(f"{url}?bbox=-1.5201,53.3999,-1.5199,53.4001")  # the warnings only
    assert len(body["items"]) == WARNINGS and calls <= 4 * WARNINGS + 10, calls
    calls, body = await cost(f"/events/{TAG}")
    assert "public 799" in body and calls <= 300, calls
    calls, body = await cost(f"/events/{TAG}/alerts.atom")
    assert body.count("<entry>") == WARNINGS and calls <= 4 * WARNINGS + 10, calls
    calls, body = await cost(f"/api/v1/events/{TAG}/map?layers=updates")
    assert calls <= 300, calls
    assert sum(f["properties"].get("count", 1) for f in body["features"]) == PUBLIC + WARNINGS
