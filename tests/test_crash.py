"""Real `fieldcomms serve` processes: killed with SIGKILL mid-write and restarted, nothing acknowledged is lost.
Also the data-directory lock as the commands see it, and `user revoke`."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from procs import free_port

pytestmark = pytest.mark.slow

CLIENTS = 20
CYCLES = 4
START_TIMEOUT = 30.0


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({"FIELDCOMMS_LOG_LEVEL": "WARNING", "FIELDCOMMS_DEMO_ADMIN": "false", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def command(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir)],
                          env=environment(), capture_output=True, text=True, timeout=timeout, cwd=data_dir.parent)


async def command_async(*args: str, data_dir: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir), env=environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=data_dir.parent)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def user_add(data_dir: Path, callsign: str, role: str) -> str:
    done = command("user", "add", "--name", f"Crash {callsign}", "--callsign", callsign, "--role", role,
                   data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1].strip()
    assert token and " " not in token
    return token


class Server:
    """One `fieldcomms serve` process, its output in files (a full pipe would block it)."""

    def __init__(self, data_dir: Path, logs: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        logs.mkdir(exist_ok=True)
        n = len(list(logs.glob("*.out")))
        self.out_path, self.err_path = logs / f"{n}.out", logs / f"{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data_dir), "--port", str(self.port)],
                env=environment(FIELDCOMMS_SNAPSHOT_EVERY="250"),  # snapshots (and crashes in them) happen too
                stdout=out, stderr=err, cwd=data_dir.parent)

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    async def ready(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                async with session.get(self.base + "/healthz") as resp:
                    if resp.status == 200:
                        body: dict[str, Any] = await resp.json()
                        assert body["status"] == "ok"
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling for readiness, not timing anything
        raise AssertionError(f"server not healthy within {START_TIMEOUT}s:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@contextmanager
def servers() -> Iterator[list[Server]]:
    """Every server started inside is killed on the way out, whatever happens."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def hammer(session: aiohttp.ClientSession, base: str, token: str, worker: int, cycle: int,
                 acked: dict[str, int], keyed: dict[str, str], stop: asyncio.Event,
                 first_ack: asyncio.Event | None = None) -> None:
    """Post as fast as possible until the server dies; record what got a 201 (and set `first_ack` then)."""
    n = 0
    while not stop.is_set():
        n += 1
        headers = bearer(token)
        key = None
        if n % 3 == 0:
            key = f"c{cycle}-w{worker}-n{n}"
            headers["Idempotency-Key"] = key
        body = {"text": f"cycle {cycle} worker {worker} post {n}", "visibility": "public" if n % 2 else "internal",
                "location": {"lat": 53.38 + worker / 1000, "lon": -1.47}}
        try:
            async with session.post(f"{base}/api/v1/events/libdempolicing/updates", json=body,
                                    headers=headers) as resp:
                if resp.status != 201:
                    raise AssertionError(f"unexpected {resp.status}: {await resp.text()}")
                out = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return  # the server is gone: this post was never acknowledged
        acked[out["id"]] = out["seq"]
        if key is not None:
            keyed[key] = out["id"]
        if first_ack is not None:
            first_ack.set()


async def check_acknowledged(session: aiohttp.ClientSession, base: str, token: str, acked: dict[str, int],
                             fresh: set[str]) -> None:
    """Every acknowledged update is listed (paging the whole event with since), and each fresh one (from the
    latest cycle) is also fetched on its own with GET /api/v1/updates/{id}."""
    listed: set[str] = set()
    since = 0
    while True:
        async with session.get(f"{base}/api/v1/events/libdempolicing/updates",
                               params={"since": since, "limit": 500}, headers=bearer(token)) as resp:
            assert resp.status == 200
            page = await resp.json()
        listed.update(u["id"] for u in page["items"])
        if len(page["items"]) < 500:
            break
        since = page["last_seq"]
    lost = set(acked) - listed
    assert not lost, f"{len(lost)} acknowledged updates missing from the list, e.g. {sorted(lost)[:5]}"

    missing: list[str] = []
    limit = asyncio.Semaphore(CLIENTS)

    async def one(update_id: str) -> None:
        async with limit, session.get(f"{base}/api/v1/updates/{update_id}", headers=bearer(token)) as resp:
            if resp.status != 200:
                missing.append(f"{update_id}: {resp.status}")
            else:
                got = await resp.json()
                assert got["id"] == update_id and got["seq"] == acked[update_id]

    await asyncio.gather(*(one(i) for i in fresh))
    assert not missing, f"{len(missing)} acknowledged updates lost, e.g. {missing[:5]}"


async def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    logs = tmp_path / "logs"
    control = user_add(data_dir, "ctl1", "control")
    officer = user_add(data_dir, "off1", "officer")
    acked: dict[str, int] = {}
    keyed: dict[str, str] = {}
    rng = random.Random()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
    with servers() as started:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            server = Server(data_dir, logs)
            started.append(server)
            await server.ready(session)
            async with session.post(server.base + "/api/v1/events", headers=bearer(control),
                                    json={"tag": "LibDemPolicing", "title": "Crash test", "status": "live"}) as r:
                assert r.status == 201, await r.text()

            for cycle in range(CYCLES):
                stop, first_ack = asyncio.Event(), asyncio.Event()
                before = set(acked)
                workers = [asyncio.create_task(hammer(session, server.base, officer, w, cycle, acked, keyed, stop,
                                                      first_ack))
                           for w in range(CLIENTS)]
                # Let writes pile up, then pull the plug: counted from the cycle's first acknowledgement, so that
                # a slow start on a loaded machine cannot make a cycle that kills before any post was answered.
                try:
                    await asyncio.wait_for(first_ack.wait(), timeout=START_TIMEOUT)
                except TimeoutError:
                    raise AssertionError(f"cycle {cycle}: no post acknowledged in {START_TIMEOUT}s:\n"
                                         f"{server.output()}") from None
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                server.kill()
                stop.set()
                await asyncio.gather(*workers)
                fresh = set(acked) - before
                assert fresh, f"cycle {cycle}: no post was acknowledged:\n{server.output()}"

                server = Server(data_dir, logs)
                started.append(server)
                health = await server.ready(session)
                assert health["seq"] >= max(acked.values())
                await check_acknowledged(session, server.base, officer, acked, fresh)

            # Idempotency answers were written with their updates: a retry after the crash gets the same id.
            for key, update_id in list(keyed.items())[:20]:
                cycle_, worker, n = (int(part[1:]) for part in key.split("-"))
                body = {"text": f"cycle {cycle_} worker {worker} post {n}",
                        "visibility": "public" if n % 2 else "internal",
                        "location": {"lat": 53.38 + worker / 1000, "lon": -1.47}}
                async with session.post(f"{server.base}/api/v1/events/libdempolicing/updates", json=body,
                                        headers={**bearer(officer), "Idempotency-Key": key}) as resp:
                    assert resp.status == 201
                    assert (await resp.json())["id"] == update_id
            assert server.stop() == 0
    assert len(acked) >= CYCLES


async def test_the_lock_and_user_revoke_across_processes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    logs = tmp_path / "logs"
    officer = user_add(data_dir, "off1", "officer")
    with servers() as started:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            server = Server(data_dir, logs)
            started.append(server)
            await server.ready(session)
            async with session.get(server.base + "/api/v1/me", headers=bearer(officer)) as resp:
                assert resp.status == 200
                assert (await resp.json())["callsign"] == "off1"

            # A second server on the same directory refuses to start, quickly and clearly; so do the user
            # commands, which would otherwise write behind the server's back. (Run side by side: each is a
            # whole Python start-up.)
            second = Server(data_dir, logs)
            started.append(second)
            started_at = time.monotonic()
            add, revoke = await asyncio.gather(
                command_async("user", "add", "--name", "N", "--callsign", "off2", "--role", "officer",
                              data_dir=data_dir),
                command_async("user", "revoke", "off1", data_dir=data_dir),
            )
            code = await asyncio.to_thread(second.proc.wait, START_TIMEOUT)
            assert code != 0
            assert time.monotonic() - started_at < START_TIMEOUT
            message = second.output()
            assert "data directory" in message and "in use" in message and str(data_dir) in message
            assert "Traceback" not in message
            for returncode, stderr in (add, revoke):
                assert returncode != 0
                assert "in use" in stderr and str(data_dir) in stderr and "Traceback" not in stderr

            # The first server is unaffected.
            async with session.get(server.base + "/healthz") as resp:
                assert resp.status == 200
            assert server.stop() == 0

            revoked = command("user", "revoke", "off1", data_dir=data_dir)
            assert revoked.returncode == 0, revoked.stderr

            server = Server(data_dir, logs)
            started.append(server)
            await server.ready(session)
            async with session.get(server.base + "/api/v1/me", headers=bearer(officer)) as resp:
                assert resp.status == 401
                assert resp.content_type == "application/problem+json"
            server.kill()
