"""Issue 2: durable POST throughput against a bare handler, append cost at 1M, start-up at 1M.

The 1,000,000-update store is left the way a server with the default settings leaves it at worst: a server
writes a snapshot every `snapshot_every` (200,000) changes, so at most 199,999 changes are in the journal
after the newest snapshot. The fill writes 800,001 updates, a snapshot, then 199,999 more.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from fieldcomms.config import Settings
from fieldcomms.model import new_id
from fieldcomms.store import Store

from .util import ROOT, append_updates, free_port, median, pin, server, temp_dir, user_add, wait_healthy

BODY = {"text": "March route agreed: Devonshire Green to Barkers Pool. #libdempolicing",
        "location": {"lat": 53.3789, "lon": -1.4779, "accuracy_m": 15}, "visibility": "public"}
CLIENTS = 50
SECONDS = 8.0
APPEND_ROUNDS = 11  # of 3,000 appends, alternating between the two stores
DURABLE_APPENDS = 300


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
%s
"""


def _load(port: int, token: str | None, seconds: float) -> dict[str, float]:
    """wrk, pinned to the other core: a Python client saturates near 1,200 req/s and would hide the gap."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with temp_dir("fc-wrk-") as d:
        script = d / "post.lua"
        script.write_text(WRK_SCRIPT % (json.dumps(BODY), auth))
        out = subprocess.run([*pin(1), "wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds:.0f}s", "--latency", "-s",
                              str(script), f"http://127.0.0.1:{port}/api/v1/events/libdempolicing/updates"],
                             check=True, capture_output=True, text=True).stdout
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _wrk_ms(out, "50%"), "p99_ms": _wrk_ms(out, "99%"),
            "errors": _wrk_errors(out)}


def _wrk_ms(out: str, label: str) -> float:
    m = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m is None:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return float(m.group(1)) * scale


def _wrk_errors(out: str) -> int:
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (int(m.group(1)) if m else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)


def post_ratio() -> dict[str, float]:
    with temp_dir("fc-bench-post-") as d:
        token = user_add(d / "data", "control", "bench1")
        with server(d / "data", core=0) as (port, _):
            import urllib.request

            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/events", method="POST",
                                         data=b'{"tag": "libdempolicing", "title": "bench", "status": "live"}',
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
            urllib.request.urlopen(req).read()
            _load(port, token, 2.0)  # warm-up
            ours = _load(port, token, SECONDS)
    bare_port = free_port()
    proc = subprocess.Popen([*pin(0), sys.executable, "-m", "bench.bare_server", str(bare_port)], cwd=ROOT)
    try:
        wait_healthy(bare_port, proc=proc)
        _load(bare_port, None, 2.0)
        bare = _load(bare_port, None, SECONDS)
    finally:
        proc.terminate()
        proc.wait()
    return {
        "post_rps": round(ours["rps"], 1), "post_p50_ms": round(ours["p50_ms"], 2),
        "post_p99_ms": round(ours["p99_ms"], 2), "post_errors": ours["errors"],
        "bare_rps": round(bare["rps"], 1), "bare_p50_ms": round(bare["p50_ms"], 2),
        "bare_p99_ms": round(bare["p99_ms"], 2),
        "post_ratio": round(ours["rps"] / bare["rps"], 3),
    }


def _update_doc(i: int) -> dict[str, object]:
    return {"id": new_id("upd"), "event": "libdempolicing", "author": {"id": "usr_bench", "callsign": "B1"},
            "text": f"Update {i}: crowd moving along Fargate towards Barkers Pool #libdempolicing",
            "hashtags": ["libdempolicing"], "location": {"lat": 53.38 + (i % 1000) * 1e-5,
                                                         "lon": -1.47 - (i % 777) * 1e-5, "source": "device"},
            "visibility": "public" if i % 3 else "internal", "kind": "info", "status": "active", "photos": [],
            "zones": [], "reply_to": None, "amplified_by": [], "captured_at": "2011-03-12T10:02:00Z",
            "received_at": "2011-03-12T10:02:01Z"}


async def _fill(store: Store, n: int) -> None:
    await append_updates(store, (_update_doc(i) for i in range(n)))


async def _append_round(store: Store, n: int = 3000) -> float:
    """The mean in-loop cost of one append (encode + apply + enqueue) over n appends. The documents are
    built before the clock starts: building them is the caller's work, not the store's."""
    docs = [_update_doc(i) for i in range(n)]
    futs = []
    t0 = time.perf_counter()
    for doc in docs:
        futs.append(store.append_nowait("update", "updates", doc))
    cost = (time.perf_counter() - t0) / n
    await asyncio.gather(*futs)
    return cost


async def _durable_latency(store: Store, i: int) -> float:
    t0 = time.perf_counter()
    await store.append("update", "updates", _update_doc(i))
    return time.perf_counter() - t0


async def _filled(path: Path, n: int) -> tuple[Store, float]:
    """A store of n updates (filled with fsync off, a setup step) as a server with the default
    `snapshot_every` would leave it at worst (see the module docstring), reopened as a server would open
    it (the snapshot, then the journal), with fsync on; and the seconds the fill took."""
    store = Store(path, fsync=False, snapshot_every=10**9)
    await store.open()
    t0 = time.perf_counter()
    every = Settings().snapshot_every
    if n > every:
        await _fill(store, n - every + 1)
        await store.snapshot()
        await _fill(store, every - 1)
    else:
        await _fill(store, n)
    fill_s = time.perf_counter() - t0
    await store.close(snapshot=True)
    # The filled store is garbage now, but in reference cycles: collected before the new one loads, or the
    # load's gc.freeze() would pin it, and this process would carry two million-document heaps.
    del store
    gc.collect()
    store = Store(path, fsync=True, snapshot_every=10**9)
    await store.open()
    return store, fill_s


async def _append_costs(small_path: Path, big_path: Path) -> dict[str, float]:
    """Append cost in a store of 1,000 and one of 1,000,000, both open in this process and measured in
    alternating rounds, so that a noisy moment on this shared machine falls on both alike."""
    small, _ = await _filled(small_path, 1000)
    big, fill_s = await _filled(big_path, 1_000_000)
    costs: dict[Store, list[float]] = {small: [], big: []}
    latency: dict[Store, list[float]] = {small: [], big: []}
    try:
        for r in range(APPEND_ROUNDS):
            for store in (small, big) if r % 2 == 0 else (big, small):
                costs[store].append(await _append_round(store))
        for i in range(DURABLE_APPENDS):
            for store in (small, big) if i % 2 == 0 else (big, small):
                latency[store].append(await _durable_latency(store, i))
    finally:
        await small.close(snapshot=False)
        await big.close(snapshot=False)
    small_cost, big_cost = median(costs[small]), median(costs[big])
    small_durable, big_durable = median(latency[small]), median(latency[big])
    return {
        "append_us_at_1k": round(small_cost * 1e6, 2), "append_us_at_1m": round(big_cost * 1e6, 2),
        "append_ratio": round(big_cost / small_cost, 3),
        "durable_append_ms_at_1k": round(small_durable * 1000, 3),
        "durable_append_ms_at_1m": round(big_durable * 1000, 3),
        "durable_append_ratio": round(big_durable / small_durable, 3),
        "fill_1m_s": round(fill_s, 1),
    }


def append_and_start() -> dict[str, float]:
    with temp_dir("fc-bench-1m-") as d:
        out = asyncio.run(_append_costs(d / "small", d / "big"))
        # Free the two stores now (the load's gc.freeze() holds their cycles), not while a server starts.
        gc.unfreeze()
        gc.collect()
        data = d / "big"
        out["data_1m_mb"] = round(sum(p.stat().st_size for p in data.glob("*") if p.is_file()) / 2**20, 1)
        starts = []
        for _ in range(3):
            port = free_port()
            t0 = time.perf_counter()
            proc = subprocess.Popen([*pin(0), sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data),
                                     "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                    env={**os.environ, "FIELDCOMMS_DEMO_ADMIN": "false"})
            try:
                wait_healthy(port, timeout=300, proc=proc)
                starts.append(time.perf_counter() - t0)
            finally:
                proc.terminate()
                proc.wait()
        out["start_1m_s"] = round(median(starts), 2)
        out["start_1m_runs_s"] = [round(x, 2) for x in starts]  # type: ignore[assignment]
    return out


def run() -> dict[str, float]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # this process's own work stays off the server's core
    results = post_ratio()
    results.update(append_and_start())
    return results


if __name__ == "__main__":
    print(run())
