"""Escalation survives a restart: an alert whose acknowledgement deadline passes while the server is down is
reported to control (`alert-overdue`) once the server is up again, because what is due is computed from the
stored alerts, not kept in timers. A real `fieldcomms serve`, stopped and started on the same directory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from procs import free_port, stop
from sse import SSEReader

from fieldcomms.auth import make_user
from fieldcomms.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TAG = "libdempolicing"
ACK_WITHIN_S = 30  # the least the contract allows: this test waits it out with the server down


async def seed(data_dir: Path) -> dict[str, str]:
    store = Store(data_dir, fsync=True)
    await store.open()
    tokens = {}
    try:
        for callsign, role in (("gold", "control"), ("pc1", "officer")):
            doc, token = make_user(f"Officer {callsign}", callsign, role)
            await store.append("user", "users", doc)
            tokens[callsign] = token
    finally:
        await store.close()
    return tokens


def serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({"FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING"})
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data_dir),
                                 "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=out)


async def ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert proc.poll() is None, "the server exited"
        try:
            async with session.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not become ready")


async def test_a_deadline_passed_while_down_is_reported_after_start(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    tokens = await seed(data)
    control = {"Authorization": f"Bearer {tokens['gold']}"}
    officer = {"Authorization": f"Bearer {tokens['pc1']}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        proc = serve(data, port, log)
        try:
            await ready(session, base, proc)
            async with session.post(base + "/api/v1/events", json={"tag": TAG, "title": "Conference",
                                                                   "status": "live"}, headers=control) as r:
                assert r.status == 201, await r.text()
            async with session.post(f"{base}/api/v1/events/{TAG}/positions", json={"lat": 53.38, "lon": -1.471},
                                    headers=officer) as r:
                assert r.status == 204
            async with session.post(f"{base}/api/v1/events/{TAG}/alerts", headers=control, json={
                    "text": "Acknowledge please", "location": {"lat": 53.38, "lon": -1.471}, "radius_m": 100,
                    "ack_within_s": ACK_WITHIN_S}) as r:
                assert r.status == 201, await r.text()
                alert = await r.json()
        finally:
            stop(proc)
        assert proc.returncode == 0, log.read_text()
        due = datetime.fromisoformat(alert["created_at"].replace("Z", "+00:00")).timestamp() + ACK_WITHIN_S
        await asyncio.sleep(max(0.0, due - time.time()) + 1.0)  # the deadline passes with no server running

        proc = serve(data, port, log)
        try:
            await ready(session, base, proc)
            async with session.get(f"{base}/api/v1/events/{TAG}/stream?since={alert['seq']}",
                                   headers=control) as resp:
                reader = SSEReader(resp.content)
                while True:
                    event = await reader.next(within=10)
                    assert event is not None
                    if event.type == "alert-overdue":
                        break
            assert event.json()["id"] == alert["id"]
            assert [o["callsign"] for o in event.json()["overdue"]] == ["pc1"]
            async with session.get(f"{base}/api/v1/alerts/{alert['id']}", headers=control) as r:
                stored = await r.json()
            assert stored["recipients"][0]["overdue"] is True
        finally:
            stop(proc)
        assert log.read_text().count("Traceback") == 0, log.read_text()
