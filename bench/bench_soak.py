"""Issue 7: a soak of a whole event on one server process, on loopback, bounded in time.

1,000 officers each post an update every 30 s and a position every 10 s (about 33 updates and 100 positions a
second), PUBLIC_SHARE of the updates public; 5,000 public and 200 control stream subscribers; 20 public readers
polling the feed every 5 s with If-None-Match. SOAK_SECONDS (env, default 600) of that, after a warm-up.

The server is `fieldcomms serve` with fsync on, as in production, pinned to core 0. The load runs on core 1:
the posters and readers here (asyncio + aiohttp), the subscribers in a forked process using bench_live's raw
epoll reader (a few microseconds a frame; an HTTP client library per stream would not keep up). Where allowed
(root), the server and the load generator run at niceness PRIORITY, so other work on a shared machine disturbs
the figures less.

Figures:
- `soak_post_p99_ms`, `soak_position_p99_ms`: from when a post was due to its answer (not from when it was
  sent, so a client that fell behind is not hidden: no coordinated omission);
- `soak_delivery_p99_ms`: per update, from its 201 reaching the poster to its frame reaching the LAST of the
  subscribers meant to get it (every public subscriber for a public update, every control subscriber for
  all), by the kernel's receive timestamp; the p99 over updates;
- `soak_rss_start_mb` / `soak_rss_end_mb` / `soak_rss_growth_mb`: the server's VmRSS after the warm-up and
  at the end; `soak_store_mb`: growth of the data directory over the same span;
- `soak_errors`: answers other than 2xx/304, posts that failed, subscribers dropped, and missing
  deliveries (an update not received by every subscriber meant to get it), plus `soak_leaks`: internal
  updates seen by a public subscriber (must be 0; counted in the errors too);
- `soak_shutdown_s`: SIGTERM to exit with every stream still open;
- `soak_server_cpu_pct`, `soak_subscribers_cpu_pct`, `soak_posters_cpu_pct` and `soak_idle_pct_by_core`: who
  used the two cores while measuring. On a two-core machine both are near saturation at the full size, so a
  neighbour's burst shows up directly in the latencies: read them together with `uptime` at the time.

`soak()` takes the sizes, so tests/test_soak.py runs the same code for 20 s on a smaller event.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from fieldcomms.auth import make_user
from fieldcomms.store import Store

from .bench_live import FILLER, Subscribers, _cpu_s, _raise_nofile, _rss_kb
from .util import percentile, server, server_log_tail, temp_dir

TAG = "libdempolicing"
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WARMUP_SECONDS = 15.0
PUBLIC_SHARE = 0.5
UPDATE_EVERY_S = 30.0
POSITION_EVERY_S = 10.0
READ_EVERY_S = 5.0
CLIENT_CONNECTIONS = 128  # keep-alive connections the posters share
DRAIN_SECONDS = 5.0  # after the last post, for the last frames to arrive
CENTRE = (53.3811, -1.4701)  # Barkers Pool, Sheffield
PRIORITY = -5  # niceness of the server and the load generator while the soak runs (see _prioritise)


@dataclass(frozen=True)
class Sizes:
    seconds: float = SOAK_SECONDS
    officers: int = 1000
    public: int = 5000
    control: int = 200
    readers: int = 20
    warmup: float = WARMUP_SECONDS
    track_each: bool = False  # record every (subscriber, update) pair: exact exactly-once, for small runs


# ---- users, straight into the store before the server starts ----------------------------------------------


async def _seed(data_dir: Path, officers: int) -> tuple[str, list[tuple[str, str]]]:
    """One control user and `officers` officers appended to a new data directory: (control token,
    [(callsign, token)]). `fieldcomms user add` per user would take minutes for a thousand."""
    store = Store(data_dir, fsync=False)
    await store.open()
    try:
        doc, control = make_user("Soak control", "soakctl", "control")
        futures = [store.append_nowait("user", "users", doc)]
        tokens = []
        for i in range(officers):
            doc, token = make_user(f"Officer {i}", f"so{i:04d}", "officer")
            futures.append(store.append_nowait("user", "users", doc))
            tokens.append((f"so{i:04d}", token))
        await asyncio.gather(*futures)
    finally:
        await store.close()
    return control, tokens


# ---- the subscribers' process --------------------------------------------------------------------------------


class _EachCount(dict):  # type: ignore[type-arg]
    """Subscribers.count, which also records which subscriber (fd) received each update, so that "every
    subscriber received it exactly once" can be checked, not only "as many frames as subscribers"."""

    def __init__(self, owner: Tracked) -> None:
        super().__init__()
        self.owner = owner
        self.each: Counter[tuple[int, float]] = Counter()

    def __setitem__(self, key: float, value: int) -> None:
        super().__setitem__(key, value)
        self.each[(self.owner.reading_fd, key)] += 1


class Tracked(Subscribers):
    """bench_live's raw reader, for control with a token, and with `track_each` every (subscriber, update) pair."""

    def __init__(self, port: int, auth: str | None, track_each: bool) -> None:
        super().__init__(port)
        if auth:
            self.request = (f"GET /api/v1/events/{TAG}/stream HTTP/1.1\r\nHost: bench\r\n"
                            f"Authorization: Bearer {auth}\r\n\r\n").encode()
        self.reading_fd = -1
        self.track_each = track_each
        if track_each:
            self.count = _EachCount(self)

    def _read(self, fd: int, s: Any) -> None:
        self.reading_fd = fd
        super()._read(fd, s)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latest": dict(self.latest), "count": dict(self.count), "open": len(self.socks),
                               "closed": self.closed}
        if self.track_each and isinstance(self.count, _EachCount):
            fds = list(self.socks)
            dup = sum(1 for n in self.count.each.values() if n > 1)
            missing = sum(1 for sent in self.count for fd in fds if (fd, sent) not in self.count.each)
            out.update(duplicates=dup, missing_pairs=missing)
        return out


def _subscriber_process(conn: Connection, port: int, public: int, control: int, control_token: str,
                        track_each: bool) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    _raise_nofile()
    groups = {"public": (Tracked(port, None, track_each), public),
              "control": (Tracked(port, control_token, track_each), control)}
    announced = False
    while True:
        while conn.poll():
            cmd = conn.recv()
            if cmd == "report":
                conn.send({name: subs.report() for name, (subs, _) in groups.items()})
            elif cmd == "quit":
                for subs, _ in groups.values():
                    for s in subs.socks.values():
                        s.close()
                return
        for subs, target in groups.values():
            pending = len(subs.socks) - len(subs.ready)
            if len(subs.socks) + subs.closed < target and pending < 200:  # ramp without overflowing the backlog
                subs.open(min(100, target - len(subs.socks) - subs.closed))
                subs.measuring = True
            subs.poll(0.002)
        if not announced and all(len(subs.ready) >= target for subs, target in groups.values()):
            conn.send(("ready", {name: len(subs.ready) for name, (subs, _) in groups.items()}))
            announced = True


# ---- posters and readers -------------------------------------------------------------------------------------


@dataclass
class Load:
    post_ms: list[float] = field(default_factory=list)
    position_ms: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    acked: dict[float, tuple[float, bool]] = field(default_factory=dict)  # mark -> (201 received at, public?)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    not_modified: int = 0

    def bad(self, what: str) -> None:
        self.statuses[what] += 1
        if len(self.failures) < 20:
            self.failures.append(what)


async def _run_load(port: int, tokens: list[tuple[str, str]], sizes: Sizes, seconds: float, load: Load,
                    rng: random.Random) -> None:
    """Every officer's posts and every reader's polls on their schedules for `seconds`."""
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=60)
    n = len(tokens)
    # (due, kind, who): each officer's first post is spread over its interval, so the rate is even.
    schedule: list[tuple[float, str, int]] = []
    for i in range(n):
        schedule += [(i * UPDATE_EVERY_S / n + k * UPDATE_EVERY_S, "update", i)
                     for k in range(int(seconds / UPDATE_EVERY_S) + 1)]
        schedule += [(i * POSITION_EVERY_S / n + k * POSITION_EVERY_S, "position", i)
                     for k in range(int(seconds / POSITION_EVERY_S) + 1)]
    schedule += [(r * READ_EVERY_S / max(1, sizes.readers) + k * READ_EVERY_S, "read", r)
                 for r in range(sizes.readers) for k in range(int(seconds / READ_EVERY_S) + 1)]
    schedule = sorted(s for s in schedule if s[0] < seconds)
    etags: dict[int, str] = {}
    counters: Counter[int] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def update(session: aiohttp.ClientSession, i: int, due: float) -> None:
        callsign, token = tokens[i]
        counters[i] += 1
        public = rng.random() < PUBLIC_SHARE
        mark = time.time()
        body = {"text": f"bench {mark:.6f} {callsign} #{counters[i]}: {FILLER[:160]}",
                "visibility": "public" if public else "internal",
                "location": {"lat": CENTRE[0] + rng.uniform(-0.01, 0.01), "lon": CENTRE[1] + rng.uniform(-0.01, 0.01),
                             "accuracy_m": 10}}
        try:
            async with session.post(f"/api/v1/events/{TAG}/updates", json=body, headers={
                    "Authorization": f"Bearer {token}", "Idempotency-Key": f"{callsign}-{mark:.6f}"}) as resp:
                await resp.read()
                done = time.perf_counter()
                if resp.status != 201:
                    load.bad(f"update {resp.status}")
                    return
            load.acked[float(f"{mark:.6f}")] = (time.time(), public)
            load.post_ms.append((done - due) * 1000)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.bad(f"update {type(exc).__name__}")

    async def position(session: aiohttp.ClientSession, i: int, due: float) -> None:
        _callsign, token = tokens[i]
        body = {"lat": CENTRE[0] + rng.uniform(-0.01, 0.01), "lon": CENTRE[1] + rng.uniform(-0.01, 0.01),
                "accuracy_m": 8}
        try:
            async with session.post(f"/api/v1/events/{TAG}/positions", json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                if resp.status != 204:
                    load.bad(f"position {resp.status}")
                    return
            load.position_ms.append((time.perf_counter() - due) * 1000)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.bad(f"position {type(exc).__name__}")

    async def read(session: aiohttp.ClientSession, r: int, due: float) -> None:
        headers = {"If-None-Match": etags[r]} if r in etags else {}
        try:
            async with session.get(f"/api/v1/events/{TAG}/updates", headers=headers) as resp:
                await resp.read()
                if resp.status == 304:
                    load.not_modified += 1
                elif resp.status == 200:
                    etags[r] = resp.headers.get("ETag", "")
                else:
                    load.bad(f"read {resp.status}")
                    return
            load.read_ms.append((time.perf_counter() - due) * 1000)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.bad(f"read {type(exc).__name__}")

    kinds = {"update": update, "position": position, "read": read}
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        for offset, kind, who in schedule:
            due = started + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(kinds[kind](session, who, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)


# ---- the soak ----------------------------------------------------------------------------------------------------


def _wait(conn: Connection, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"subscribers: no answer after {timeout}s")
    return conn.recv()


def _cores() -> dict[str, list[int]]:
    """Each core's time in clock ticks: user, nice, system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as f:
        return {line.split()[0]: [int(v) for v in line.split()[1:9]] for line in f
                if line.startswith("cpu") and line[3].isdigit()}


def _idle_pct(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, int]:
    out = {}
    for core, ticks in after.items():
        spent = [b - a for a, b in zip(before.get(core, ticks), ticks, strict=True)]
        out[core] = round(100 * (spent[3] + spent[4]) / max(1, sum(spent)))
    return out


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / (1 << 20)


def _prioritise(pid: int = 0) -> None:
    """Run a little ahead of other work on a shared machine. The load generator has little headroom on its
    core: when a neighbour takes a share of it for long, the subscribers fall behind and the server, rightly,
    drops them as slow readers, which says nothing about the server. Needs root; without it nothing changes."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, PRIORITY)


def soak(sizes: Sizes) -> dict[str, Any]:
    """Run the soak at these sizes; the calling process runs on core 1 meanwhile (restored afterwards)."""
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    affinity = os.sched_getaffinity(0) if pinned else None
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if pinned:
        os.sched_setaffinity(0, {1})
    _prioritise()
    try:
        return _soak(sizes)
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, niceness)


def _soak(sizes: Sizes) -> dict[str, Any]:
    _raise_nofile()
    rng = random.Random(7)
    out: dict[str, Any] = {"soak_" + k: v for k, v in asdict(sizes).items() if k != "track_each"}
    out["soak_public_share"] = PUBLIC_SHARE
    with temp_dir("fc-bench-soak-") as d:
        data = d / "data"
        control, tokens = asyncio.run(_seed(data, sizes.officers))
        # Every simulated reader comes from 127.0.0.1, and control's from one user: the stream caps per
        # address and per user (abuse bounds) are lifted.
        with server(data, core=0, env={"FIELDCOMMS_SSE_STREAMS_PER_ADDRESS": "1000000",
                                       "FIELDCOMMS_SSE_STREAMS_PER_USER": "1000000"}) as (port, proc):
            _prioritise(proc.pid)
            asyncio.run(_create_event(port, control))
            parent, child = mp.get_context("fork").Pipe()
            subs = mp.get_context("fork").Process(
                target=_subscriber_process, args=(child, port, sizes.public, sizes.control, control, sizes.track_each),
                daemon=True)
            subs.start()
            try:
                started = time.perf_counter()
                _, ready = _wait(parent, 300)
                out["soak_connect_s"] = round(time.perf_counter() - started, 1)
                print(f"  subscribers connected: {ready} in {out['soak_connect_s']} s", flush=True)
                load = Load()
                asyncio.run(_run_load(port, tokens, sizes, sizes.warmup, load, rng))
                time.sleep(1.0)
                rss_start, store_start = _rss_kb(proc.pid) / 1024, _dir_mb(data)
                rss_samples = [round(rss_start, 1)]
                sampler_stop = threading.Event()

                def sample() -> None:
                    while not sampler_stop.wait(max(1.0, sizes.seconds / 20)):
                        rss_samples.append(round(_rss_kb(proc.pid) / 1024, 1))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                measured = Load()
                measured.acked = load.acked  # warm-up updates must reach every subscriber too
                cpu = (_cpu_s(proc.pid), _cpu_s(subs.pid or 0), time.process_time(), time.perf_counter(), _cores())
                asyncio.run(_run_load(port, tokens, sizes, sizes.seconds, measured, rng))
                wall = time.perf_counter() - cpu[3]
                out["soak_server_cpu_pct"] = round(100 * (_cpu_s(proc.pid) - cpu[0]) / wall)
                out["soak_subscribers_cpu_pct"] = round(100 * (_cpu_s(subs.pid or 0) - cpu[1]) / wall)
                out["soak_posters_cpu_pct"] = round(100 * (time.process_time() - cpu[2]) / wall)
                out["soak_idle_pct_by_core"] = _idle_pct(cpu[4], _cores())
                sampler_stop.set()
                time.sleep(DRAIN_SECONDS)
                rss_end, store_end = _rss_kb(proc.pid) / 1024, _dir_mb(data)
                parent.send("report")
                report = _wait(parent, 120)
                term = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                out["soak_shutdown_s"] = round(time.perf_counter() - term, 2)
            finally:
                parent.send("quit")
                subs.join(10)
    out.update(_figures(sizes, load, measured, report))
    out.update(soak_rss_start_mb=round(rss_start, 1), soak_rss_end_mb=round(rss_end, 1),
               soak_rss_growth_mb=round(rss_end - rss_start, 1), soak_rss_samples_mb=rss_samples,
               soak_store_mb=round(store_end - store_start, 1))
    if out["soak_errors"]:
        out["soak_server_log_tail"] = [line.rstrip() for line in server_log_tail(proc)[-10:]]
    return out


async def _create_event(port: int, control: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/api/v1/events", json={"tag": TAG, "title": "Soak", "status": "live"},
            headers={"Authorization": f"Bearer {control}"}) as resp:
        if resp.status != 201:
            raise RuntimeError(f"creating the event: {resp.status} {await resp.text()}")


def _figures(sizes: Sizes, warm: Load, load: Load, report: dict[str, Any]) -> dict[str, Any]:
    public, control = report["public"], report["control"]
    acked = load.acked  # warm-up and measured updates
    missing = leaks = 0
    delivery: list[float] = []
    for mark, (acked_at, is_public) in acked.items():
        want = [(control, sizes.control)] + ([(public, sizes.public)] if is_public else [])
        arrived = []
        for group, n in want:
            if group["count"].get(mark, 0) != n:
                missing += 1
            if mark in group["latest"]:
                arrived.append(group["latest"][mark])
        if not is_public and mark in public["count"]:
            leaks += 1
        if arrived:
            delivery.append((max(arrived) - acked_at) * 1000)
    dropped = public["closed"] + control["closed"]
    bad_answers = sum(warm.statuses.values()) + sum(load.statuses.values())
    each = {k: public.get(k, 0) + control.get(k, 0) for k in ("duplicates", "missing_pairs")}
    errors = bad_answers + dropped + missing + leaks + each["duplicates"] + each["missing_pairs"]
    seconds = sizes.seconds
    out: dict[str, Any] = {
        "soak_post_p50_ms": round(percentile(load.post_ms, 50), 1),
        "soak_post_p99_ms": round(percentile(load.post_ms, 99), 1),
        "soak_position_p99_ms": round(percentile(load.position_ms, 99), 1),
        "soak_read_p99_ms": round(percentile(load.read_ms, 99), 1),
        "soak_delivery_p50_ms": round(percentile(delivery, 50), 1),
        "soak_delivery_p99_ms": round(percentile(delivery, 99), 1),
        "soak_delivery_max_ms": round(max(delivery), 1) if delivery else None,
        "soak_updates": len(load.post_ms), "soak_positions": len(load.position_ms),
        "soak_reads": len(load.read_ms), "soak_reads_not_modified": load.not_modified,
        "soak_updates_per_s": round(len(load.post_ms) / seconds, 1),
        "soak_positions_per_s": round(len(load.position_ms) / seconds, 1),
        "soak_updates_checked": len(acked),
        "soak_subscribers_open_at_end": public["open"] + control["open"],
        "soak_errors": errors, "soak_bad_answers": bad_answers, "soak_dropped_streams": dropped,
        "soak_missing_deliveries": missing, "soak_leaks": leaks,
    }
    if sizes.track_each:
        out.update(soak_duplicate_pairs=each["duplicates"], soak_missing_pairs=each["missing_pairs"])
    failures = warm.failures + load.failures
    if failures:
        out["soak_failures_sample"] = failures[:10]
    return out


def run() -> dict[str, Any]:
    return soak(Sizes())


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
