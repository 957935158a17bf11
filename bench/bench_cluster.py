"""Issue 11: many workers on PostgreSQL. Every figure runs on a PRIVATE PostgreSQL cluster (initdb + pg_ctl in a
temporary directory, as tests/pgdb.py makes it), so its CPU is ours alone to count and nobody else's load is in it.

- cluster_cpu_per_post_ratio_3w_1w: CPU-seconds per 1,000 posts (every worker + every PostgreSQL process), with
  3 workers over 1 worker, the same paced load (posts spread round-robin over the workers). Two cores cannot show
  throughput growing with workers; what must hold is that a post does not cost more CPU as workers are added.
- cross_worker_delivery_p99_ms: from the 201 of a post on one worker to its frame on a stream of another, with
  posts paced at 200/s.
- pg_post_ratio: durable posts/s (wrk, 50 connections) on `serve --workers 2` ÷ the bare aiohttp handler on one
  core, same run.
- pg_start_1m_s: a worker joining a deployment of 1,000,000 updates answers /healthz 200 after this long. The
  database is filled by COPY (a setup step), as `fieldcomms migrate` fills one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson
import psycopg

from fieldcomms.model import new_id
from fieldcomms.store.pg.chainhash import GENESIS, canonical, chain_hash
from fieldcomms.store.pg.migrations import migrate

from .bench_spine import _load, _update_doc
from .util import ROOT, free_port, median, percentile, pin, temp_dir, wait_healthy

sys.path.insert(0, str(ROOT / "tests"))
from pgdb import PrivateCluster  # noqa: E402  (one copy of the private-cluster helper, shared with the tests)

TAG = "libdempolicing"
PACED_RATE = 200.0
PACED_SECONDS = 10.0
CLK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / CLK


def _pg_cpu_s(cluster: PrivateCluster) -> float:
    """The postmaster (with the backends it has reaped) and every live backend."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    total = _cpu_s(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid == postmaster:
                total += _cpu_s(int(entry.name))
    return total


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")},
            "FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING"}


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args], check=True, capture_output=True, text=True,
                          cwd=ROOT, env=_env()).stdout


def _user(url: str, role: str, callsign: str) -> str:
    return _cli("user", "add", "--name", callsign, "--callsign", callsign, "--role", role,
                "--database-url", url).strip().splitlines()[-1]


@contextmanager
def _workers(url: str, data: Path, n: int, *extra: str) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    procs = []
    try:
        for _ in range(n):
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--database-url", url, "--port",
                                     str(port), "--data-dir", str(data), *extra], cwd=ROOT, env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append((port, proc))
        for port, proc in procs:
            wait_healthy(port, proc=proc)
        yield procs
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fresh_database(cluster: PrivateCluster, name: str) -> str:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + "/" + name


async def _paced(bases: list[str], token: str, rate: float, seconds: float) -> list[float]:
    """Posts at `rate` per second, round-robin over the workers; returns the 201 times (monotonic)."""
    done: list[float] = []
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> None:
            async with session.post(f"{bases[i % len(bases)]}/api/v1/events/{TAG}/updates",
                                    json={"text": f"paced {i}", "visibility": "internal"},
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status == 201:
                    done.append(time.monotonic())

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return done


def _event(port: int, control: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/events", method="POST",
                                 data=orjson.dumps({"tag": TAG, "title": "bench", "status": "live"}),
                                 headers={"Authorization": f"Bearer {control}", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def cpu_per_post(cluster: PrivateCluster, d: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in (1, 3, 1, 3):  # alternating, so a noisy moment on this shared machine falls on both alike
        url = _fresh_database(cluster, f"cpu{n}")
        control, officer = _user(url, "control", "c1"), _user(url, "officer", "o1")
        with _workers(url, d / "media", n) as procs:
            _event(procs[0][0], control)
            asyncio.run(_paced([f"http://127.0.0.1:{p}" for p, _ in procs], officer, PACED_RATE, 2.0))  # warm-up
            workers_before, pg_before = sum(_cpu_s(proc.pid) for _, proc in procs), _pg_cpu_s(cluster)
            done = asyncio.run(_paced([f"http://127.0.0.1:{p}" for p, _ in procs], officer, PACED_RATE,
                                      PACED_SECONDS))
            workers_s = sum(_cpu_s(proc.pid) for _, proc in procs) - workers_before
            pg_s = _pg_cpu_s(cluster) - pg_before
        for key, seconds in ((f"cpu_s_per_1000_posts_{n}w", workers_s + pg_s),
                             (f"worker_cpu_s_per_1000_posts_{n}w", workers_s),
                             (f"pg_cpu_s_per_1000_posts_{n}w", pg_s)):
            out[key] = out.get(key, 0.0) + seconds / len(done) * 1000 / 2  # the mean of the two runs
    return {k: round(v, 3) for k, v in out.items()} | {
        "cluster_cpu_per_post_ratio_3w_1w": round(out["cpu_s_per_1000_posts_3w"] / out["cpu_s_per_1000_posts_1w"], 3)}


async def _delivery(a: str, b: str, officer: str, control: str) -> list[float]:
    posted: dict[str, float] = {}
    arrived: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, session.get(
            f"{b}/api/v1/events/{TAG}/stream", headers={"Authorization": f"Bearer {control}"}) as stream:
        async def read() -> None:
            buffer = b""
            async for chunk in stream.content.iter_any():
                buffer += chunk
                *frames, buffer = buffer.split(b"\n\n")
                now = time.monotonic()
                for frame in frames:
                    for line in frame.split(b"\n"):
                        if line.startswith(b"data: ") and b'"paced ' in line:
                            arrived.setdefault(orjson.loads(line[6:])["text"], now)

        reader = asyncio.create_task(read())

        async def one(i: int) -> None:
            text = f"paced {i}"
            async with session.post(f"{a}/api/v1/events/{TAG}/updates", json={"text": text, "visibility": "internal"},
                                    headers={"Authorization": f"Bearer {officer}"}) as resp:
                if resp.status == 201:
                    posted[text] = time.monotonic()

        tasks = []
        start = time.monotonic()
        for i in range(int(PACED_RATE * PACED_SECONDS)):
            delay = start + i / PACED_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        await asyncio.sleep(2.0)
        reader.cancel()
    # A frame may arrive before the 201 is read by this client: that counts as 0 ms, not negative.
    return [max(0.0, arrived[t] - posted[t]) * 1000 for t in posted if t in arrived] + \
        [float("inf")] * sum(1 for t in posted if t not in arrived)


def delivery(cluster: PrivateCluster, d: Path) -> dict[str, float]:
    url = _fresh_database(cluster, "delivery")
    control, officer = _user(url, "control", "c1"), _user(url, "officer", "o1")
    with _workers(url, d / "media", 2) as procs:
        _event(procs[0][0], control)
        time.sleep(0.5)
        delays = asyncio.run(_delivery(f"http://127.0.0.1:{procs[0][0]}", f"http://127.0.0.1:{procs[1][0]}",
                                       officer, control))
    return {"cross_worker_delivery_p50_ms": round(median(delays), 2),
            "cross_worker_delivery_p99_ms": round(percentile(delays, 99), 2),
            "cross_worker_delivery_lost": sum(1 for x in delays if x == float("inf"))}


def post_ratio(cluster: PrivateCluster, d: Path) -> dict[str, float]:
    url = _fresh_database(cluster, "posts")
    control = _user(url, "control", "c1")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--workers", "2", "--database-url", url,
                             "--port", str(port), "--data-dir", str(d / "media")], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc=proc)
        time.sleep(2.0)  # both workers up (the first to answer is not proof of the second)
        _event(port, control)
        _load(port, control, 2.0)
        ours = _load(port, control, 8.0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bare_port = free_port()
    bare = subprocess.Popen([*pin(0), sys.executable, "-m", "bench.bare_server", str(bare_port)], cwd=ROOT)
    try:
        wait_healthy(bare_port, proc=bare)
        _load(bare_port, None, 2.0)
        base = _load(bare_port, None, 8.0)
    finally:
        bare.terminate()
        bare.wait()
    return {"pg_post_rps_2w": round(ours["rps"], 1), "pg_post_p99_ms_2w": round(ours["p99_ms"], 2),
            "pg_post_errors": ours["errors"], "pg_bare_rps": round(base["rps"], 1),
            "pg_post_ratio": round(ours["rps"] / base["rps"], 3)}


def _fill_1m(url: str) -> float:
    """1,000,000 updates as changes and current state, by COPY (chain hashes included)."""
    t0 = time.perf_counter()
    asyncio.run(_migrate(url))
    # One COPY at a time per connection: the changes on one, the current state on the other.
    with psycopg.connect(url) as conn, psycopg.connect(url) as conn2:
        prev = GENESIS
        with conn.cursor() as cur, conn2.cursor() as cur2:
            with cur.copy("COPY fc_changes (seq, type, coll, id, event, record, chain) FROM STDIN") as changes, \
                    cur2.copy("COPY fc_state (coll, id, seq, doc) FROM STDIN") as state:
                for seq in range(1, 1_000_001):
                    doc = {**_update_doc(seq), "id": new_id("upd"), "seq": seq}
                    record = {"seq": seq, "type": "update", "coll": "updates", "data": doc}
                    prev = chain_hash(prev, canonical(record))
                    changes.write_row((seq, "update", "updates", doc["id"], TAG, orjson.dumps(record), prev))
                    state.write_row(("updates", doc["id"], seq, orjson.dumps(doc)))
            cur.execute("UPDATE fc_counter SET seq = %s, hash = %s WHERE id = 1", (1_000_000, prev))
        conn2.commit()
        conn.commit()
    return time.perf_counter() - t0


async def _migrate(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await migrate(conn)


def _snapshot_from(url: str, data: Path) -> None:
    """The same deployment as an embedded data directory (its snapshot file, written from the current state),
    so that the embedded store's start is measured on the same documents in the same run."""
    from fieldcomms.store.snapshot import FORMAT, SNAPSHOT

    data.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(url) as conn, open(data / SNAPSHOT, "wb") as f:
        row = conn.execute("SELECT seq, hash FROM fc_counter WHERE id = 1").fetchone()
        assert row is not None
        f.write(orjson.dumps({"seq": int(row[0]), "format": FORMAT, "chain": bytes(row[1]).hex()}) + b"\n")
        with conn.cursor(name="snap", binary=True) as cur:
            cur.execute("SELECT coll, doc FROM fc_state WHERE seq > 0 ORDER BY seq")
            while rows := cur.fetchmany(20_000):
                f.writelines(b'["' + coll.encode() + b'",' + bytes(doc) + b"]\n" for coll, doc in rows)


def _start(args: list[str]) -> tuple[float, float, float]:
    """(seconds to /healthz 200, CPU-seconds the server used until then, load average when it began)."""
    load = os.getloadavg()[0]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--port", str(port), *args], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seconds = wait_healthy(port, timeout=300, proc=proc)
        return seconds, _cpu_s(proc.pid), load
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def start_1m(cluster: PrivateCluster, d: Path) -> dict[str, float]:
    """A worker joining 1,000,000 updates, three times, alternating with the embedded store starting from the
    same documents (a snapshot written from the same state), so a noisy moment falls on both alike. On this
    shared 2-core machine the wall time follows the load average (the start is CPU-bound and gets a share of a
    core), so the CPU-seconds each start used are recorded too: they do not depend on the neighbours."""
    url = _fresh_database(cluster, "big")
    fill_s = _fill_1m(url)
    _snapshot_from(url, d / "embedded")
    pg: list[tuple[float, float, float]] = []
    embedded: list[tuple[float, float, float]] = []
    for _ in range(3):
        pg.append(_start(["--database-url", url, "--data-dir", str(d / "media")]))
        embedded.append(_start(["--data-dir", str(d / "embedded")]))
    pg_s, emb_s = median([s for s, _, _ in pg]), median([s for s, _, _ in embedded])
    return {"pg_start_1m_s": round(pg_s, 2), "pg_start_1m_runs_s": [round(s, 2) for s, _, _ in pg],  # type: ignore
            "pg_start_1m_cpu_s": round(median([c for _, c, _ in pg]), 2),
            "pg_start_1m_load_averages": [round(a, 2) for _, _, a in pg],  # type: ignore[dict-item]
            "embedded_start_1m_same_run_s": round(emb_s, 2),
            "embedded_start_1m_same_run_runs_s": [round(s, 2) for s, _, _ in embedded],  # type: ignore
            "embedded_start_1m_same_run_cpu_s": round(median([c for _, c, _ in embedded]), 2),
            "pg_start_over_embedded": round(pg_s / emb_s, 2), "pg_fill_1m_s": round(fill_s, 1)}


PARTS = {"cpu": cpu_per_post, "delivery": delivery, "posts": post_ratio, "start": start_1m}


def run() -> dict[str, float]:
    """Every part, or only those named in BENCH_ONLY (comma-separated: cpu, delivery, posts, start); the figures
    of the parts not run are kept from the previous results."""
    only = [p.strip() for p in os.environ.get("BENCH_ONLY", "").split(",") if p.strip()]
    unknown = [p for p in only if p not in PARTS]
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
    figures: dict[str, float] = {}
    if only:
        results = ROOT / "bench" / "results.json"
        figures = dict(orjson.loads(results.read_bytes()).get("cluster", {})) if results.exists() else {}
        for key in ("measured_at", "seconds"):
            figures.pop(key, None)
    # A partial run keeps the load averages of the full run beside its own (the other figures were taken then).
    suffix = "_" + "_".join(only) if only else ""
    figures[f"load_average_1m_at_start{suffix}"] = round(os.getloadavg()[0], 2)
    cluster = PrivateCluster()
    try:
        cluster.start()
        with temp_dir("fc-bench-cluster-") as d:
            for name, part in PARTS.items():
                if only and name not in only:
                    continue
                print(f"   {part.__name__} ...", flush=True)
                figures.update(part(cluster, d))
                print(f"   {figures}", flush=True)
    finally:
        cluster.destroy()
    figures[f"load_average_1m_at_end{suffix}"] = round(os.getloadavg()[0], 2)
    return figures
