"""Report matching runs on a thread, never on the event loop: while an officer's list of reports is being scored
against the event's rumours, the server still takes reports from the public (202) and answers /healthz at once.

The matcher here is the real one made slow on purpose (it blocks its thread for a while before scoring), so that a
matcher called on the loop would hold every other request for that long."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.rumours.matching import Matcher
from fieldcomms.services import build_services
from tests.conftest import EVENT_TAG, auth, make_user

HOLD_S = 1.5


class SlowMatcher(Matcher):
    """The real matcher, holding its thread for HOLD_S before scoring, as 500 rumours on a loaded machine might."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def match_all(self, texts: Sequence[str], rumours: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        self.started.set()
        time.sleep(HOLD_S)
        return super().match_all(texts, rumours)


async def test_scoring_a_page_of_reports_never_holds_the_loop(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False)
    services = build_services(settings)
    matcher = SlowMatcher()
    services.matcher = matcher
    client: TestClient = await aiohttp_client(create_app(settings, services))
    control = await make_user(client.app, "control", "control1")
    officer = await make_user(client.app, "officer", "officer1")
    resp = await client.post("/api/v1/events", json={"tag": EVENT_TAG, "title": "March", "status": "live"},
                             headers=auth(control))
    assert resp.status == 201, await resp.text()
    rumour = await client.post(f"/api/v1/events/{EVENT_TAG}/rumours", headers=auth(officer),
                               json={"claim": "Police snipers are on the roofs around Barkers Pool"})
    assert rumour.status == 201, await rumour.text()
    rumour_id = (await rumour.json())["id"]
    sent = await client.post(f"/api/v1/events/{EVENT_TAG}/reports",
                             json={"text": "Guys with rifles on top of the buildings by Barker's Pool"})
    assert sent.status == 202, await sent.text()

    listing = asyncio.ensure_future(client.get(f"/api/v1/events/{EVENT_TAG}/reports", headers=auth(officer)))
    assert await asyncio.to_thread(matcher.started.wait, 10), "the list never reached the matcher"
    started = time.perf_counter()
    posted = await client.post(f"/api/v1/events/{EVENT_TAG}/reports", json={"text": "snipper on roof"})
    healthy = await client.get("/healthz")
    elapsed = time.perf_counter() - started
    assert posted.status == 202, await posted.text()
    assert healthy.status == 200
    assert not listing.done()  # the scoring was still going on while the loop served both
    assert elapsed < HOLD_S / 2, elapsed

    page = await (await listing).json()
    [item] = page["items"]
    assert [m["rumour_id"] for m in item["matches"]] == [rumour_id]
    assert all(0.0 <= m["score"] <= 1.0 for m in item["matches"])
