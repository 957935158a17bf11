"""`fieldcomms export --database-url` and `fieldcomms purge --due --database-url` beside two real
`fieldcomms serve --database-url` workers: the export's access-log entry reaches both workers, the bundle
verifies, the purge is applied by both workers to what they serve, its bytes are in no row of any table, and
`fieldcomms check --database-url` still passes."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
from procs import free_port

from .helpers import rows_containing

ROOT = Path(__file__).resolve().parents[2]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({"FIELDCOMMS_LOG_LEVEL": "WARNING", "FIELDCOMMS_DEMO_ADMIN": "false", "PYTHONUNBUFFERED": "1"})
    return env


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args], env=environment(), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


class Worker:
    def __init__(self, url: str, data: Path, logs: Path) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = logs / f"{data.name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--database-url", url,
                                          "--data-dir", str(data), "--port", self.base.rsplit(":", 1)[1]],
                                         env=environment(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    async def ready(self, s: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with s.get(self.base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling for readiness
        raise AssertionError(f"not healthy:\n{self.log.read_text()}")


@contextmanager
def workers(url: str, tmp: Path, n: int) -> Iterator[list[Worker]]:
    started = [Worker(url, tmp / f"data{k}", tmp) for k in range(n)]
    try:
        yield started
    finally:
        for w in started:
            w.proc.terminate()
        for w in started:
            try:
                w.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


async def test_export_and_purge_commands_beside_two_workers(pg_url: str, tmp_path: Path) -> None:
    tokens = {}
    for callsign, role in (("adm", "admin"), ("ctl", "control"), ("pc1", "officer")):
        done = run("user", "add", "--name", callsign, "--callsign", callsign, "--role", role, "--database-url", pg_url)
        assert done.returncode == 0, done.stderr
        tokens[callsign] = done.stdout.strip().splitlines()[-1].strip()
    h = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    with workers(pg_url, tmp_path, 2) as (one, two):
        async with aiohttp.ClientSession() as s:
            await one.ready(s)
            await two.ready(s)

            async def call(w: Worker, method: str, url: str, who: str | None, body: Any = None,
                           status: int = 200) -> Any:
                async with s.request(method, w.base + url, json=body, headers=h[who] if who else {}) as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.json() if resp.status not in (202, 204) else None

            async def eventually(w: Worker, url: str, who: str, check: Any) -> Any:
                deadline = time.monotonic() + 10
                while True:
                    async with s.get(w.base + url, headers=h[who]) as resp:
                        body = await resp.json()
                        if resp.status == 200 and check(body):
                            return body
                    assert time.monotonic() < deadline, body
                    await asyncio.sleep(0.05)  # waiting for the other worker to follow (within a second)

            for tag in ("alpha", "bravo"):
                await call(one, "POST", "/api/v1/events", "ctl", {"tag": tag, "title": tag, "status": "live",
                                                                  "ends_at": "2011-03-13T18:00:00Z"}, 201)
                await eventually(two, f"/api/v1/events/{tag}", "ctl", lambda b: True)
                for k in range(3):
                    await call(two, "POST", f"/api/v1/events/{tag}/positions", "pc1",
                               {"lat": 53.1 + k / 1000, "lon": -1.1}, 204)
                async with s.post(f"{one.base}/api/v1/events/{tag}/reports",
                                  json={"text": "seen", "contact": f"{tag}.9917@example.org"}) as resp:
                    assert resp.status == 202
            await eventually(one, "/api/v1/events/alpha/officers", "ctl", lambda b: b["items"])
            await call(one, "PATCH", "/api/v1/events/alpha", "ctl", {"status": "closed"})

            # export --database-url while both workers run: the entry is in the database (both see it).
            bundle = tmp_path / "alpha.zip"
            done = await asyncio.to_thread(run, "export", "alpha", str(bundle), "--reason", "IOPC referral 42",
                                           "--database-url", pg_url, "--data-dir", str(tmp_path / "data0"))
            assert done.returncode == 0, done.stdout + done.stderr
            checked = await asyncio.to_thread(run, "verify", str(bundle))
            assert checked.returncode == 0, checked.stdout
            zf = zipfile.ZipFile(bundle)
            assert orjson.loads(zf.read("reports.json"))[0]["contact"] == "alpha.9917@example.org"
            positions = list(csv.DictReader(io.StringIO(zf.read("positions.csv").decode())))
            assert len(positions) == 3
            assert [e["action"] for e in orjson.loads(zf.read("audit.json"))] == ["event.export"]
            for w in (one, two):
                log = await eventually(w, "/api/v1/audit?action=event.export", "adm", lambda b: b["items"])
                [entry] = log["items"]
                assert entry["actor"]["id"] == "cli" and entry["reason"] == "IOPC referral 42"
            bad = await asyncio.to_thread(run, "export", "alpha", str(tmp_path / "x.zip"), "--reason", "no",
                                          "--database-url", pg_url, "--data-dir", str(tmp_path / "data0"))
            assert bad.returncode == 2 and "reason" in bad.stderr and not (tmp_path / "x.zip").exists()
            unknown = await asyncio.to_thread(run, "export", "nosuch", str(tmp_path / "y.zip"), "--reason",
                                              "for the court", "--database-url", pg_url, "--data-dir",
                                              str(tmp_path / "data0"))
            assert unknown.returncode == 1 and "nosuch" in unknown.stderr and not (tmp_path / "y.zip").exists()

            # purge --due --database-url: alpha (closed, due) goes, bravo (live) stays, on both workers.
            assert rows_containing(pg_url, b"alpha.9917@example.org")
            purged = await asyncio.to_thread(run, "purge", "--due", "--database-url", pg_url, "--data-dir",
                                             str(tmp_path / "data0"))
            assert purged.returncode == 0, purged.stdout + purged.stderr
            # One officer's position and the track document holding its points.
            assert "purged #alpha: 1 position documents, 1 track documents, 1 report contacts" in purged.stdout
            assert "bravo" not in purged.stdout
            for w in (one, two):
                officers = await eventually(w, "/api/v1/events/alpha/officers", "ctl", lambda b: not b["items"])
                assert officers["items"] == []
                reports = await call(w, "GET", "/api/v1/events/alpha/reports", "ctl")
                assert [r.get("contact") for r in reports["items"]] == [None]
                assert (await call(w, "GET", "/api/v1/events/bravo/officers", "ctl"))["items"] != []
                assert (await call(w, "GET", "/api/v1/events/alpha", None))["purged_at"]
            assert rows_containing(pg_url, b"alpha.9917@example.org") == []
            assert rows_containing(pg_url, b"bravo.9917@example.org")
            again = await asyncio.to_thread(run, "purge", "--due", "--database-url", pg_url, "--data-dir",
                                            str(tmp_path / "data0"))
            assert again.returncode == 0 and "no event is due" in again.stdout, again.stdout + again.stderr

            # The API's export after the purge, from the other worker: no contact, no position.
            async with s.get(f"{two.base}/api/v1/events/alpha/export?reason=after+the+purge",
                             headers=h["ctl"]) as resp:
                assert resp.status == 200
                after = tmp_path / "after.zip"
                after.write_bytes(await resp.read())
            assert (await asyncio.to_thread(run, "verify", str(after))).returncode == 0
            zf = zipfile.ZipFile(after)
            assert b"alpha.9917" not in zf.read("reports.json")
            assert list(csv.DictReader(io.StringIO(zf.read("positions.csv").decode()))) == []
    check = run("check", "--database-url", pg_url)
    assert check.returncode == 0, check.stdout
    assert "(0 redacted" not in check.stdout

    # A redacted record is covered by its stored digest: one changed digit of it breaks the chain there.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT seq, record FROM fc_changes WHERE position('\"redacted\":true'::bytea in record) > 0 "
                           "ORDER BY seq LIMIT 1").fetchone()
        assert row is not None
        seq, record = row[0], orjson.loads(bytes(row[1]))
        digest = record["digest"]
        record["digest"] = ("1" if digest[0] != "1" else "2") + digest[1:]
        conn.execute("UPDATE fc_changes SET record = %s WHERE seq = %s", (orjson.dumps(record), seq))
    broken = run("check", "--database-url", pg_url)
    assert broken.returncode == 1
    assert f"the chain breaks at seq {seq} (a redacted record whose stored digest does not match)" in broken.stdout
