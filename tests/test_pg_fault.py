"""PostgreSQL stopped and started under a running worker (a PRIVATE cluster, never the shared server): writes get
503 with Retry-After while it is away, reads and /healthz keep answering, the worker recovers by itself, and
nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pgdb import PrivateCluster
from test_pg_cluster import TAG, Worker, all_updates, bearer, make_event, user_add, workers

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Any:
    pg = PrivateCluster()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


async def test_database_stopped_and_started_mid_burst(cluster: PrivateCluster, tmp_path: Path) -> None:
    url = cluster.url
    control = user_add(url, tmp_path, "control1", "control")
    officer = user_add(url, tmp_path, "officer1", "officer")
    acked: set[str] = set()
    statuses: dict[int, int] = {}
    retry_after: set[str] = set()
    async with aiohttp.ClientSession() as session:
        with workers() as started:
            w = Worker(url, tmp_path)
            started.append(w)
            await w.ready(session)
            await make_event(session, w.base, control)
            stop = asyncio.Event()

            async def hammer(client: int) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    text = f"client {client} post {n}"
                    async with session.post(f"{w.base}/api/v1/events/{TAG}/updates",
                                            json={"text": text, "visibility": "internal"},
                                            headers=bearer(officer)) as resp:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        if resp.status == 201:
                            acked.add(text)
                        elif resp.status == 503:
                            retry_after.add(resp.headers.get("Retry-After", ""))
                            await asyncio.sleep(0.05)
                        else:
                            raise AssertionError(f"{resp.status}: {await resp.text()}")

            tasks = [asyncio.create_task(hammer(i)) for i in range(6)]
            await asyncio.sleep(1.0)
            before = len(acked)
            assert before > 0
            await asyncio.to_thread(cluster.stop, "fast")  # mid-burst
            await asyncio.sleep(1.5)
            # Away: writes refused, reads answer from memory, /healthz says so.
            async with session.get(f"{w.base}/healthz") as resp:
                assert resp.status == 503
                assert (await resp.json())["database"] == "unreachable"
            async with session.get(f"{w.base}/api/v1/events/{TAG}/updates", headers=bearer(officer)) as resp:
                assert resp.status == 200
            # A wrong token is still a 401 (the failed-token limit falls back to the worker's own bucket).
            async with session.get(f"{w.base}/api/v1/me", headers=bearer("fc_wrong")) as resp:
                assert resp.status == 401, await resp.text()
            assert statuses.get(503, 0) > 0 and retry_after and "" not in retry_after
            during = len(acked)
            await asyncio.to_thread(cluster.start)
            deadline = time.monotonic() + 20
            while len(acked) < during + 20:  # recovery, without restarting the worker
                assert time.monotonic() < deadline, f"writes never recovered: {statuses}"
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*tasks)
            async with session.get(f"{w.base}/healthz") as resp:
                assert resp.status == 200, await resp.text()
            texts = [i["text"] for i in await all_updates(session, w.base, officer)]
            assert len(texts) == len(set(texts))
            assert acked <= set(texts), sorted(acked - set(texts))[:5]
            assert w.proc.poll() is None
    # And what a fresh worker loads from the database agrees.
    async with aiohttp.ClientSession() as session:
        with workers() as started:
            fresh = Worker(url, tmp_path)
            started.append(fresh)
            await fresh.ready(session)
            texts = [i["text"] for i in await all_updates(session, fresh.base, officer)]
            assert acked <= set(texts)
