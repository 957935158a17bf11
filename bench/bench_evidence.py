"""Issue 12: exporting an event's evidence bundle, and that the export never holds the server's loop.

The data directory is filled in-process through the Store API (fsync off) before the server starts: an event
with 100,000 updates (200 of them carrying one of 200 distinct original photos of ~250 KB each, kept in
data/originals as uploads leave them) and 10,000 officer positions (200 officers, 50 reports each). Then a real
server runs pinned to core 0, and this process (core 1) downloads `GET /events/{tag}/export` as a control user
while a second task polls /healthz every 20 ms. A baseline of /healthz without the export comes first. The
bundle is checked with the same code as `fieldcomms verify`, so a fast but broken export cannot pass.

Figures: export_100k_s (the whole download), healthz_p99_ms_during_export (and the idle baseline beside it).

Then the same on PostgreSQL, when a server answers at 127.0.0.1:5432: the data directory is copied into a
database of its own (`fieldcomms migrate`, every change with its seq), a `fieldcomms serve --database-url` runs
on it (the data directory still holds the originals and the signing key), and the export is downloaded the same
way: pg_export_100k_s, pg_healthz_p99_ms_during_export. The database is dropped after.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from fieldcomms.evidence.originals import Originals, original_info
from fieldcomms.model import new_id
from fieldcomms.store import Store

from .util import median, percentile, server, temp_dir, user_add

TAG = "libdempolicing"
N_UPDATES = 100_000
N_OFFICERS, REPORTS_EACH = 200, 50  # 10,000 positions
N_PHOTOS = 200
POLL_S = 0.020
IDLE_SECONDS = 5.0


def _photo(rng: random.Random, i: int) -> bytes:
    im = Image.effect_noise((640, 480), 40 + i % 20).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


async def _fill(path: Path) -> int:
    store = Store(path, fsync=False, snapshot_every=10**9)
    await store.open()
    await store.append("event", "events", {"id": TAG, "tag": TAG, "title": "bench", "description": "",
                                           "status": "live", "starts_at": None, "ends_at": None,
                                           "created_at": "2011-03-12T09:00:00Z", "retain_until": None})
    rng = random.Random(12)
    originals = Originals(path / "originals")
    photos: list[dict[str, Any]] = []
    total_photo_bytes = 0
    for i in range(N_PHOTOS):
        data = _photo(rng, i)
        total_photo_bytes += len(data)
        originals.save(data)
        info = original_info(data)
        doc = {"id": info["sha256"], "url": f"/media/{info['sha256']}", "thumb_url": f"/media/{info['sha256']}/thumb",
               "width": 640, "height": 480, "content_type": "image/jpeg", "taken_at": None, "location": None,
               "uploaded_by": {"id": "usr_bench", "callsign": "B1"}, "uploaded_at": "2011-03-12T10:00:00Z",
               "original": info}
        await store.append("photo", "photos", doc)
        photos.append(doc)
    batch = []
    for i in range(N_UPDATES):
        lat, lon = rng.gauss(53.3800, 0.0025), rng.gauss(-1.4710, 0.004)
        carried = [{k: photos[i // (N_UPDATES // N_PHOTOS)][k] for k in ("id", "url", "thumb_url", "width", "height")}] \
            if i % (N_UPDATES // N_PHOTOS) == 0 else []
        batch.append(store.append_nowait("update", "updates", {
            "id": new_id("upd"), "event": TAG, "author": {"id": "usr_bench", "callsign": "B1"},
            "text": f"Update {i}: crowd moving along Fargate towards Barkers Pool, \"quoted\" #libdempolicing",
            "hashtags": [TAG], "location": {"lat": round(lat, 6), "lon": round(lon, 6), "source": "device"},
            "visibility": "public" if rng.random() < 0.7 else "internal", "kind": "info",
            "status": "retracted" if rng.random() < 0.02 else "active", "photos": carried, "zones": [],
            "reply_to": None, "amplified_by": [], "captured_at": "2011-03-12T10:02:00Z",
            "received_at": "2011-03-12T10:02:01Z"}))
        if len(batch) >= 5000:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)
    tracks: dict[int, list[dict[str, Any]]] = {}
    for r in range(REPORTS_EACH):
        for o in range(N_OFFICERS):
            point = {"lat": round(53.38 + rng.gauss(0, 0.003), 6), "lon": round(-1.47 + rng.gauss(0, 0.004), 6),
                     "at": f"2011-03-12T{10 + r // 60:02d}:{r % 60:02d}:{o % 60:02d}Z"}
            track = (tracks.get(o, []) + [point])[-20:]
            tracks[o] = track
            batch.append(store.append_nowait("position", "positions", {
                "id": f"pos_{TAG}_usr_{o}", "event": TAG, "officer": {"id": f"usr_{o}", "callsign": f"PC{o}"},
                "location": {"lat": point["lat"], "lon": point["lon"], "source": "device"}, "at": point["at"],
                "received_at": point["at"], "track": track, "_at": 1299924000.0 + r * 60}))
    await asyncio.gather(*batch)
    # Half of it before a snapshot, half in the journal, as a server leaves it.
    await store.close(snapshot=True)
    return total_photo_bytes


async def _poll(port: int, stop: asyncio.Event, out: list[float]) -> None:
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            started = time.perf_counter()
            async with s.get(f"http://127.0.0.1:{port}/healthz") as resp:
                await resp.read()
                assert resp.status == 200
            out.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(POLL_S)


async def _measure(port: int, token: str, target: Path) -> dict[str, Any]:
    idle: list[float] = []
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(port, stop, idle))
    await asyncio.sleep(IDLE_SECONDS)
    stop.set()
    await poller
    during: list[float] = []
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(port, stop, during))
    started = time.perf_counter()
    size = 0
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(
            f"http://127.0.0.1:{port}/api/v1/events/{TAG}/export", params={"reason": "bench export"},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        f = await asyncio.to_thread(target.open, "wb")
        try:
            async for chunk in resp.content.iter_chunked(1 << 20):
                f.write(chunk)  # a local file: the bench's own client, not the server under test
                size += len(chunk)
        finally:
            f.close()
    elapsed = time.perf_counter() - started
    stop.set()
    await poller
    return {"export_100k_s": round(elapsed, 2), "healthz_p99_ms_during_export": round(percentile(during, 99), 1),
            "healthz_p50_ms_during_export": round(median(during), 1),
            "healthz_p99_ms_idle": round(percentile(idle, 99), 1), "healthz_samples_during": len(during),
            "bundle_bytes": size}


PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def _on_postgresql(data: Path, tmp: Path) -> dict[str, Any]:
    """The export from a PostgreSQL deployment holding the same event; {} if no PostgreSQL answers."""
    import subprocess
    import sys
    import uuid

    import psycopg

    from fieldcomms.evidence.verify import verify_bundle

    from .util import ROOT

    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=3, autocommit=True) as conn:
            name = f"fc_bench_evidence_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL not reachable ({exc}); the export on PostgreSQL is not measured", flush=True)
        return {}
    url = f"{PG_SERVER}/{name}"
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fieldcomms", "migrate", "--data-dir", str(data), "--database-url",
                        url], check=True, capture_output=True, cwd=ROOT)
        copy_s = time.perf_counter() - started
        token = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--database-url", url, "--name",
                                "pg_ctl", "--callsign", "pg_ctl", "--role", "control"], check=True,
                               capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
        load = os.getloadavg()[0]
        with server(data, extra=["--database-url", url]) as (port, _proc):
            figures = asyncio.run(_measure(port, token, tmp / "pg-bundle.zip"))
        verdict = verify_bundle(tmp / "pg-bundle.zip")
        assert verdict.ok, verdict.message
        return {"pg_export_100k_s": figures["export_100k_s"],
                "pg_healthz_p99_ms_during_export": figures["healthz_p99_ms_during_export"],
                "pg_healthz_p50_ms_during_export": figures["healthz_p50_ms_during_export"],
                "pg_healthz_p99_ms_idle": figures["healthz_p99_ms_idle"], "pg_bundle_bytes": figures["bundle_bytes"],
                "pg_copy_s": round(copy_s, 1), "pg_load_average_at_start": round(load, 2),
                "pg_load_average_at_end": round(os.getloadavg()[0], 2), "pg_verified": verdict.ok}
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run() -> dict[str, Any]:
    from fieldcomms.evidence.verify import verify_bundle

    with temp_dir("fieldcomms-bench-evidence-") as tmp:
        data = tmp / "data"
        started = time.perf_counter()
        photo_bytes = asyncio.run(_fill(data))
        fill_s = time.perf_counter() - started
        token = user_add(data, "control", "bench_ctl")
        load = os.getloadavg()[0]
        with server(data) as (port, _proc):
            figures = asyncio.run(_measure(port, token, tmp / "bundle.zip"))
        verdict = verify_bundle(tmp / "bundle.zip")
        assert verdict.ok, verdict.message
        figures.update(fill_s=round(fill_s, 1), photo_bytes=photo_bytes, load_average=round(os.getloadavg()[0], 2),
                       load_average_at_start=round(load, 2), verified=verdict.ok)
        figures.update(_on_postgresql(data, tmp))
        print(figures, flush=True)
        return figures
