"""Issue 13: an alert to 1,000 officers reaches 1,000 handsets through Web Push, and the server stays responsive.

A real server on core 0 (fsync on, `push_allow_insecure_endpoints` so that it may post to loopback); this
process, on core 1, runs the push service stand-in (an aiohttp server on 127.0.0.1 that counts what arrives)
and the clients. 1,000 officers are seeded, each reports a position inside the alert's circle and subscribes
one endpoint. Each round: /healthz is polled every 10 ms, control posts one alert, and the clock stops when the
1,000th push has arrived at the stand-in (`push_1k_recipients_s`, from the POST). One push of each round is
decrypted with the handset's key, so what is counted is a real RFC 8291 message. Three rounds; the median is
the figure. /healthz is polled the same way with no push first, for a same-run baseline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fieldcomms.auth import make_user
from fieldcomms.store import Store

from .util import median, percentile, poll_healthz, server, temp_dir

OFFICERS = 1000
ROUNDS = 3
POLL_S = 0.010
IDLE_SECONDS = 3.0
TAG = "benchpush"
HERE = {"lat": 53.3800, "lon": -1.4710}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def seed(data_dir: Path) -> tuple[str, list[str]]:
    store = Store(data_dir, fsync=False)
    await store.open()
    try:
        doc, control = make_user("Bench control", "benchgold", "control")
        await store.append("user", "users", doc)
        officers = []
        for i in range(OFFICERS):
            doc, token = make_user(f"Officer {i}", f"pc{i:04d}", "officer")
            store.append_nowait("user", "users", doc)
            officers.append(token)
    finally:
        await store.close()
    return control, officers


class Receiver:
    """The push service stand-in: counts pushes, keeps the first of each round to decrypt."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.first: bytes = b""
        self.done = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{n}", self.take)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024).start()
        self.port = self.runner.addresses[0][1]

    async def take(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.count += 1
        if not self.first:
            self.first = body
        if self.count >= self.target:
            self.done.set()
        return web.Response(status=201)


async def measure(port: int, control: str, officers: list[str]) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    receiver = Receiver()
    await receiver.start()
    handset = ec.generate_private_key(ec.SECP256R1())
    auth_secret = os.urandom(16)
    keys = {"p256dh": b64url(handset.public_key().public_bytes(serialization.Encoding.X962,
                                                                serialization.PublicFormat.UncompressedPoint)),
            "auth": b64url(auth_secret)}
    gold = {"Authorization": f"Bearer {control}"}
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as api, aiohttp.ClientSession() as probe:
        async with api.post(f"{base}/api/v1/events", json={"tag": TAG, "title": "bench", "status": "live"},
                            headers=gold) as resp:
            assert resp.status == 201, await resp.text()
        slots = asyncio.Semaphore(32)

        async def enrol(i: int, token: str) -> None:
            who = {"Authorization": f"Bearer {token}"}
            async with slots:
                async with api.post(f"{base}/api/v1/events/{TAG}/positions", headers=who, json={
                        "lat": HERE["lat"] + (i % 40) * 1e-5, "lon": HERE["lon"] + (i // 40) * 1e-5}) as r:
                    assert r.status == 204, await r.text()
                async with api.post(f"{base}/api/v1/push/subscriptions", headers=who, json={
                        "endpoint": f"http://127.0.0.1:{receiver.port}/push/{i}", "keys": keys}) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(enrol(i, t) for i, t in enumerate(officers)))

        stop = asyncio.Event()
        idle_task = asyncio.create_task(poll_healthz(probe, base, stop, POLL_S))
        await asyncio.sleep(IDLE_SECONDS)
        stop.set()
        idle = await idle_task

        runs: list[float] = []
        busy: list[float] = []
        for n in range(ROUNDS):
            receiver.count, receiver.first, receiver.target = 0, b"", OFFICERS
            receiver.done.clear()
            stop = asyncio.Event()
            probe_task = asyncio.create_task(poll_healthz(probe, base, stop, POLL_S))
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            async with api.post(f"{base}/api/v1/events/{TAG}/alerts", headers=gold, json={
                    "text": f"Bench alert {n}", "location": HERE, "radius_m": 500}) as r:
                assert r.status == 201, await r.text()
                sent = await r.json()
            assert len(sent["recipients"]) == OFFICERS, len(sent["recipients"])
            await asyncio.wait_for(receiver.done.wait(), 120)
            runs.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)
            stop.set()
            busy.extend(await probe_task)
            payload = json.loads(http_ece.decrypt(receiver.first, private_key=handset, auth_secret=auth_secret,
                                                  version="aes128gcm"))
            assert payload["type"] == "alert" and payload["id"] == sent["id"], payload
        assert receiver.runner is not None
        await receiver.runner.cleanup()
    return {
        "officers": OFFICERS,
        "push_1k_recipients_s": round(median(runs), 3),
        "push_1k_recipients_s_runs": [round(r, 3) for r in runs],
        "healthz_p99_ms_during_push": round(percentile(busy, 99), 2),
        "healthz_p50_ms_during_push": round(percentile(busy, 50), 2),
        "healthz_max_ms_during_push": round(max(busy), 2),
        "healthz_samples_during_push": len(busy),
        "healthz_p99_ms_idle": round(percentile(idle, 99), 2),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def run() -> dict[str, Any]:
    before = os.sched_getaffinity(0)
    with temp_dir("fc-bench-push-") as d:
        control, officers = asyncio.run(seed(d / "data"))
        env = {"FIELDCOMMS_PUSH_ALLOW_INSECURE_ENDPOINTS": "true"}
        with server(d / "data", core=0, env=env) as (port, _):
            if len(before) > 1:
                os.sched_setaffinity(0, {1})  # the load generator and the push stand-in on the other core
            try:
                return asyncio.run(measure(port, control, officers))
            finally:
                os.sched_setaffinity(0, before)
