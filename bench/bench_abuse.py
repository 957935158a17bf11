"""Issue 15: what cheap requests can make a server do, on an event of 100,000 public updates.

- `healthz_p99_ms_under_replay_flood`: /healthz p99 while 200 public clients reconnect again and again with
  `since=0` (each replay is framed in slices, so the loop is never held for long), against the same run's
  /healthz p99 with no flood (`healthz_p99_ms_idle`). The per-address stream cap is raised for this figure
  (`sse_streams_per_address=1000`): with the default (50) most of the flood would simply be refused with 429,
  which would measure the cap rather than the replay.
- `public_worst_request_p99_ms_100k`: the slowest, by p99, of the public request shapes of item 7 (a list by
  kind, by visibility, in a tiny box, the event page, alerts.atom and feed.atom, the map without zoom, the
  rumour board page and the public rumour list), each measured while an officer's positions arrive ten times a
  second (they used to empty the feed caches).
- `public_rumour_board_p99_ms`: the public rumour board (`/events/{tag}/rumours`) on the same event, which also
  has 5,000 rumours of which 20 are answered in public (the board used to walk all 5,000 on every request).

The server runs on core 0; the flood runs in its own process and the probes in this one, both on core 1. The
data directory is filled in-process through the Store API before the server starts.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import os
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from fieldcomms.model import new_id
from fieldcomms.rumours import lifecycle
from fieldcomms.store import Store

from .util import ROOT, append_updates, percentile, server, temp_dir, user_add

TAG = "libdempolicing"
N_UPDATES = 100_000
N_RUMOURS, N_PUBLIC_RUMOURS = 5_000, 20
FLOOD_CLIENTS = int(os.environ.get("FC_BENCH_FLOOD_CLIENTS", "200"))
FLOOD_S = 20.0
PROBE_EVERY_S = 0.02
REQUESTS = 200
TINY_BOX = "-1.47101,53.37999,-1.47099,53.38001"
SHAPES = {
    "list_kind_warning": f"/api/v1/events/{TAG}/updates?kind=warning",
    "list_visibility_internal": f"/api/v1/events/{TAG}/updates?visibility=internal",
    "list_tiny_bbox": f"/api/v1/events/{TAG}/updates?bbox={TINY_BOX}",
    "event_page": f"/events/{TAG}",
    "alerts_atom": f"/events/{TAG}/alerts.atom",
    "feed_atom": f"/events/{TAG}/feed.atom",
    "map_no_zoom": f"/api/v1/events/{TAG}/map?layers=updates",
    "rumour_board": f"/events/{TAG}/rumours",
    "rumour_list": f"/api/v1/events/{TAG}/rumours",
}


def _update(rng: random.Random, i: int) -> dict[str, Any]:
    lat, lon = rng.gauss(53.3800, 0.01), rng.gauss(-1.4710, 0.015)
    return {"id": new_id("upd"), "event": TAG, "author": {"id": "usr_bench", "callsign": "B1"},
            "text": f"Update {i}: crowd moving along Fargate towards Barkers Pool #libdempolicing",
            "hashtags": [TAG], "location": {"lat": round(lat, 6), "lon": round(lon, 6), "source": "device"},
            "visibility": "public", "kind": "warning" if i % 500 == 7 else "info", "status": "active",
            "photos": [], "zones": [], "reply_to": None, "amplified_by": [],
            "captured_at": "2011-03-12T10:02:00Z", "received_at": "2011-03-12T10:02:01Z"}


async def _fill(path: Path, n: int) -> None:
    store = Store(path, fsync=False, snapshot_every=10**9)
    await store.open()
    await store.append("event", "events", {"id": TAG, "tag": TAG, "title": "bench", "description": "",
                                           "status": "live", "starts_at": None, "ends_at": None,
                                           "created_at": "2011-03-12T09:00:00Z"})
    rng = random.Random(15)
    await _fill_rumours(store, rng)  # first: the last 5,000 changes are public updates (the replay flood's)
    await append_updates(store, (_update(rng, i) for i in range(n)))
    await store.close(snapshot=True)


async def _fill_rumours(store: Store, rng: random.Random) -> None:
    """5,000 rumours, 20 of them answered in public (each by a public update of its own)."""
    now = datetime.now(UTC)
    by = {"id": "usr_bench", "callsign": "B1"}
    public_every = N_RUMOURS // N_PUBLIC_RUMOURS
    batch = []
    for i in range(N_RUMOURS):
        rumour = lifecycle.new_rumour(new_id("rum"), TAG, f"Rumour {i}: police are closing Fargate", None,
                                      None, by, now)
        if i % public_every == public_every - 1:
            update = await store.append("update", "updates", _update(rng, N_UPDATES + i))
            rumour = lifecycle.add_rebuttal(rumour, "false", update, by, now, None)
        batch.append(store.append_nowait("rumour", "rumours", rumour))
        if len(batch) >= 1000:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)


# ---- the replay flood (in its own process) ------------------------------------------------------------------


async def _one_client(port: int, stop: float, counts: list[int], since: int) -> None:
    request = f"GET /api/v1/events/{TAG}/stream?since={since} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            seen = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # until the replay is over: a reset, or 1 MB of frames
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    break
                seen = (seen + chunk)[-4096:]
                counts[1] += len(chunk)
                if b"event: reset" in seen or counts[1] > (counts[0] + 1) << 20:
                    break
            counts[0] += 1
            writer.close()
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)


def _flood(port: int, seconds: float, out: Any, since: int = 0) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    async def main() -> list[int]:
        counts = [0, 0]
        stop = time.monotonic() + seconds
        await asyncio.gather(*[_one_client(port, stop, counts, since) for _ in range(FLOOD_CLIENTS)])
        return counts

    out.put(asyncio.run(main()))


def _probe_healthz(port: int, seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):  # a timeout counts as what it waited, then reconnect
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(PROBE_EVERY_S)
    conn.close()
    return times


# ---- the public request shapes -----------------------------------------------------------------------------


def _positions(port: int, token: str, stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rng = random.Random(1)
    while not stop.is_set():
        body = orjson.dumps({"lat": 53.38 + rng.random() * 1e-3, "lon": -1.47 + rng.random() * 1e-3})
        try:
            conn.request("POST", f"/api/v1/events/{TAG}/positions", body=body,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):  # a swamped server (the baseline): try again
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        time.sleep(0.1)
    conn.close()


def _shapes(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out: dict[str, float] = {}
    for name, url in SHAPES.items():
        times = []
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            try:
                conn.request("GET", url, headers={"Accept-Encoding": "gzip"})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):  # a timeout counts as what it waited
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                continue
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
        out[f"public_{name}_p50_ms"] = round(percentile(times, 50), 2)
        out[f"public_{name}_p99_ms"] = round(percentile(times, 99), 2)
    conn.close()
    return out


def _flooded(port: int, since: int) -> tuple[list[float], int, int]:
    """/healthz latencies while the flood runs, and the flood's connections and bytes."""
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    flood = ctx.Process(target=_flood, args=(port, FLOOD_S, queue, since))
    flood.start()
    time.sleep(1.0)  # the flood is under way
    busy = _probe_healthz(port, FLOOD_S - 2.0)
    connects, received = queue.get(timeout=120)
    flood.join(timeout=60)
    return busy, connects, received


def _measure(data: Path, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = user_add(data, "officer", f"bench{len(str(root))}", root=root)
    env = {"FIELDCOMMS_SSE_STREAMS_PER_ADDRESS": "1000", "FIELDCOMMS_FSYNC": "false"}
    with server(data, core=0, env=env, root=root) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", f"/api/v1/events/{TAG}/map?zoom=3")  # the map index, built once per event
        conn.getresponse().read()
        conn.close()

        idle = _probe_healthz(port, 5.0)
        out["healthz_p99_ms_idle"] = round(percentile(idle, 99), 2)
        # since=0: the figure of the issue (on 100,000 updates, a `reset` known without walking them); then
        # since=N-5000: 5,000 items replayed from the store to each client, framed in turns.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", f"/api/v1/events/{TAG}/updates?limit=1")
        last_seq = orjson.loads(conn.getresponse().read())["last_seq"]
        conn.close()
        for label, since in (("", 0), ("_5000_items", last_seq - 5000)):
            busy, connects, received = _flooded(port, since)
            out[f"healthz_p50_ms_under_replay_flood{label}"] = round(percentile(busy, 50), 2)
            out[f"healthz_p99_ms_under_replay_flood{label}"] = round(percentile(busy, 99), 2)
            out[f"healthz_max_ms_under_replay_flood{label}"] = round(max(busy), 2)
            out[f"replay_flood{label}_connects"] = connects
            out[f"replay_flood{label}_mb_received"] = round(received / 1e6, 1)

        stop = threading.Event()
        poster = threading.Thread(target=_positions, args=(port, token, stop), daemon=True)
        poster.start()
        try:
            shapes = _shapes(port)
        finally:
            stop.set()
            poster.join(timeout=10)
        out.update(shapes)
        out["public_worst_request_p99_ms_100k"] = max(v for k, v in shapes.items() if k.endswith("_p99_ms"))
        out["public_rumour_board_p99_ms"] = shapes["public_rumour_board_p99_ms"]
    return out


def run() -> dict[str, Any]:
    """With FIELDCOMMS_BENCH_BASELINE_ROOT (a tree of the code before, e.g. `git archive main`), the same
    measurements run against it first, in the same run and on the same data: `baseline_*` figures."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    out: dict[str, Any] = {"abuse_updates": N_UPDATES, "abuse_flood_clients": FLOOD_CLIENTS,
                           "load_average_1m_before": round(os.getloadavg()[0], 2)}
    baseline = os.environ.get("FIELDCOMMS_BENCH_BASELINE_ROOT")
    with temp_dir("fc-bench-abuse-") as d:
        data = d / "data"
        asyncio.run(_fill(data, N_UPDATES))
        if baseline:
            out.update({f"baseline_{k}": v for k, v in _measure(data, Path(baseline)).items()})
        out.update(_measure(data, ROOT))
    out["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return out


if __name__ == "__main__":
    print(run())
