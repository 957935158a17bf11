"""Issue 5: GET /map over 100,000 stored updates, a city-centre box at zoom 14 and the whole city at zoom 11,
as the public and as control. The server runs on core 0, this client on core 1.

The data directory is filled in-process through the Store API (fsync off) before the server starts, so the
server loads 100,000 updates as it would after a long event. The first map request of an event builds its
index; that is reported apart (`map_first_request_ms`), then each case is measured over many requests.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import time
from pathlib import Path
from typing import Any

from fieldcomms.model import new_id
from fieldcomms.store import Store

from .util import append_updates, percentile, server, temp_dir, user_add

TAG = "libdempolicing"
N_UPDATES = 100_000
REQUESTS = 300
CITY_CENTRE = "-1.4800,53.3750,-1.4620,53.3850"  # Barkers Pool, Fargate, City Hall, Division Street
WHOLE_CITY = "-1.5600,53.3300,-1.3800,53.4300"
CASES = [("centre_z14", CITY_CENTRE, 14), ("city_z11", WHOLE_CITY, 11)]


def _update(rng: random.Random, i: int) -> dict[str, Any]:
    if rng.random() < 0.6:  # most posts come from the centre, where the march is
        lat, lon = rng.gauss(53.3800, 0.0025), rng.gauss(-1.4710, 0.004)
    else:
        lat, lon = rng.uniform(53.33, 53.43), rng.uniform(-1.56, -1.38)
    return {"id": new_id("upd"), "event": TAG, "author": {"id": "usr_bench", "callsign": "B1"},
            "text": f"Update {i}: crowd moving along Fargate towards Barkers Pool #libdempolicing",
            "hashtags": [TAG], "location": {"lat": round(lat, 6), "lon": round(lon, 6), "source": "device"},
            "visibility": "public" if rng.random() < 0.7 else "internal", "kind": "info",
            "status": "retracted" if rng.random() < 0.02 else "active", "photos": [], "zones": [], "reply_to": None,
            "amplified_by": [], "captured_at": "2011-03-12T10:02:00Z", "received_at": "2011-03-12T10:02:01Z"}


async def _fill(path: Path, n: int) -> None:
    store = Store(path, fsync=False, snapshot_every=10**9)
    await store.open()
    await store.append("event", "events", {"id": TAG, "tag": TAG, "title": "bench", "description": "",
                                           "status": "live", "starts_at": None, "ends_at": None,
                                           "created_at": "2011-03-12T09:00:00Z"})
    rng = random.Random(5)
    await append_updates(store, (_update(rng, i) for i in range(n)))
    await store.close(snapshot=True)


def _get(conn: http.client.HTTPConnection, url: str, token: str | None) -> tuple[float, bytes]:
    headers = {"Accept-Encoding": "gzip"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    t0 = time.perf_counter()
    conn.request("GET", url, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
    return elapsed, body


def run() -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    out: dict[str, Any] = {"map_updates": N_UPDATES, "map_requests_per_case": REQUESTS}
    with temp_dir("fc-bench-map-") as d:
        data = d / "data"
        t0 = time.perf_counter()
        asyncio.run(_fill(data, N_UPDATES))
        out["map_fill_s"] = round(time.perf_counter() - t0, 1)
        token = user_add(data, "control", "bench1")
        with server(data, core=0) as (port, _):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            first, _ = _get(conn, f"/api/v1/events/{TAG}/map?bbox={CITY_CENTRE}&zoom=14", None)
            first_staff, _ = _get(conn, f"/api/v1/events/{TAG}/map?bbox={CITY_CENTRE}&zoom=14", token)
            out["map_first_request_ms"] = round(max(first, first_staff) * 1000, 1)
            worst = 0.0
            for name, bbox, zoom in CASES:
                for who, tok in (("public", None), ("control", token)):
                    url = f"/api/v1/events/{TAG}/map?bbox={bbox}&zoom={zoom}"
                    times = []
                    size = 0
                    for _ in range(REQUESTS):
                        elapsed, body = _get(conn, url, tok)
                        times.append(elapsed * 1000)
                        size = len(body)
                    p99 = percentile(times, 99)
                    worst = max(worst, p99)
                    out[f"map_{name}_{who}_p50_ms"] = round(percentile(times, 50), 2)
                    out[f"map_{name}_{who}_p99_ms"] = round(p99, 2)
                    out[f"map_{name}_{who}_kb"] = round(size / 1024, 1)
            # Without zoom a box is never clustered: the centre as a list of features, for comparison.
            times = [_get(conn, f"/api/v1/events/{TAG}/map?bbox=-1.4712,53.3799,-1.4708,53.3801", None)[0] * 1000
                     for _ in range(50)]
            out["map_small_box_unclustered_p50_ms"] = round(percentile(times, 50), 2)
            conn.close()
    out["map_100k_p99_ms"] = round(worst, 2)
    return out


if __name__ == "__main__":
    print(run())
