"""`fieldcomms export` and `fieldcomms purge --due` beside a running server (they never take its lock: the
export reads the files, and the server records the access or carries out the purge through the inbox), and
the same commands with no server running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
from procs import free_port, stop

from fieldcomms.auth import make_user
from fieldcomms.store import Store

from .helpers import files_containing

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


async def seed(data_dir: Path) -> dict[str, str]:
    store = Store(data_dir)
    await store.open()
    tokens = {}
    try:
        for callsign, role in (("adm", "admin"), ("ctl", "control"), ("pc1", "officer")):
            doc, token = make_user(callsign, callsign, role)
            await store.append("user", "users", doc)
            tokens[callsign] = token
    finally:
        await store.close()
    return tokens


def serve(data_dir: Path, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({"FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING"})
    with open(logs / "server.out", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data_dir),
                                 "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


async def ready(session: aiohttp.ClientSession, proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            async with session.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)  # polling for readiness
    raise AssertionError("the server did not start")


async def test_export_and_purge_with_and_without_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tokens = await seed(data)
    h = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    proc, base = serve(data, tmp_path)
    try:
        async with aiohttp.ClientSession() as s:
            await ready(s, proc, base)

            async def call(method: str, url: str, who: str | None, body: Any = None, status: int = 200) -> Any:
                async with s.request(method, base + url, json=body, headers=h[who] if who else {}) as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.json() if resp.status not in (202, 204) else None

            for tag in ("alpha", "bravo"):
                await call("POST", "/api/v1/events", "ctl", {"tag": tag, "title": tag, "status": "live",
                                                             "ends_at": "2011-03-13T18:00:00Z"}, 201)
                await call("POST", f"/api/v1/events/{tag}/positions", "pc1", {"lat": 53.1, "lon": -1.1}, 204)
                async with s.post(f"{base}/api/v1/events/{tag}/reports",
                                  json={"text": "seen", "contact": f"{tag}.9917@example.org"}) as resp:
                    assert resp.status == 202
            await call("PATCH", "/api/v1/events/alpha", "ctl", {"status": "closed"})

            # Export beside the running server: the lock stays the server's, the access is logged by it.
            bundle = tmp_path / "alpha.zip"
            done = await asyncio.to_thread(run, "export", "alpha", str(bundle), "--reason", "IOPC referral 42",
                                           "--data-dir", str(data))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "wrote" in done.stdout
            checked = await asyncio.to_thread(run, "verify", str(bundle))
            assert checked.returncode == 0, checked.stdout
            assert "alpha.9917@example.org" in zipfile.ZipFile(bundle).read("reports.json").decode()
            log = await call("GET", "/api/v1/audit?action=event.export", "adm")
            [entry] = log["items"]
            assert entry["actor"]["id"] == "cli" and entry["reason"] == "IOPC referral 42"
            assert entry["event"] == "alpha"
            bad = await asyncio.to_thread(run, "export", "alpha", str(tmp_path / "x.zip"), "--reason", "no",
                                          "--data-dir", str(data))
            assert bad.returncode == 2 and "reason" in bad.stderr and not (tmp_path / "x.zip").exists()
            unknown = await asyncio.to_thread(run, "export", "nosuch", str(tmp_path / "y.zip"), "--reason",
                                              "for the court", "--data-dir", str(data))
            assert unknown.returncode == 1 and "nosuch" in unknown.stderr

            # purge --due beside the running server: the server carries it out.
            purged = await asyncio.to_thread(run, "purge", "--due", "--data-dir", str(data))
            assert purged.returncode == 0, purged.stdout + purged.stderr
            assert "purged #alpha" in purged.stdout and "bravo" not in purged.stdout
            assert (await call("GET", "/api/v1/events/alpha/officers", "ctl"))["items"] == []
            assert (await call("GET", "/api/v1/events/bravo/officers", "ctl"))["items"] != []
            assert (await call("GET", "/api/v1/events/alpha", None))["purged_at"]
            await call("PATCH", "/api/v1/events/bravo", "ctl", {"status": "closed"})
    finally:
        stop(proc)
    assert proc.returncode == 0

    # With no server: the commands take the lock themselves.
    bundle = tmp_path / "bravo.zip"
    done = run("export", "bravo", str(bundle), "--reason", "Civil claim disclosure", "--data-dir", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert run("verify", str(bundle)).returncode == 0
    purged = run("purge", "--due", "--data-dir", str(data))
    assert purged.returncode == 0 and "purged #bravo" in purged.stdout, purged.stdout + purged.stderr
    again = run("purge", "--due", "--data-dir", str(data))
    assert again.returncode == 0 and "no event is due" in again.stdout
    store = Store(data)
    store.load_read_only()
    actions = [(e["action"], e["event"], e["actor"]["id"]) for e in sorted(store.all("audit"), key=lambda e: e["seq"])]
    assert actions == [("event.export", "alpha", "cli"), ("event.purge", "alpha", "cli"),
                       ("event.export", "bravo", "cli"), ("event.purge", "bravo", "cli")]
    check = run("check", "--data-dir", str(data))
    assert check.returncode == 0, check.stdout
    for tag in ("alpha", "bravo"):
        assert files_containing(data, f"{tag}.9917@example.org".encode()) == []
