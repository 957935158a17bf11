"""Shared by benchmarks: real server processes pinned to one core, free ports, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_healthy(port: int, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None,
                 log_tail: deque[str] | None = None) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc is not None and proc.poll() is not None:
            tail = "".join(log_tail or ())
            raise RuntimeError(f"server exited with {proc.returncode}" + (f"; its last log lines:\n{tail}" if tail else ""))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"server on {port} not healthy after {timeout}s")


def pin(core: int) -> list[str]:
    """taskset prefix so the server runs on one core and the load generator on the other."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def user_add(data_dir: Path, role: str = "officer", callsign: str = "bench1", root: Path = ROOT) -> str:
    out = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--data-dir", str(data_dir),
                          "--name", callsign, "--callsign", callsign, "--role", role],
                         check=True, capture_output=True, text=True, cwd=root)
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def server(data_dir: Path, *, core: int = 0, env: dict[str, str] | None = None,
           extra: Sequence[str] = (), root: Path = ROOT) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A `fieldcomms serve` from the tree at `root` (`python -m` imports the package from its working
    directory): another tree, e.g. an export of main, gives a same-run baseline."""
    port = free_port()
    full_env = {**os.environ, "FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING", **(env or {})}
    proc = subprocess.Popen([*pin(core), sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data_dir),
                             "--port", str(port), *extra], env=full_env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The server's log is read all along, so that a long benchmark never blocks on a full pipe; the last
    # lines are kept (server_log_tail) for a report or an error.
    tail: deque[str] = deque(maxlen=50)
    _LOG_TAILS[proc.pid] = tail
    threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True).start()
    try:
        wait_healthy(port, proc=proc, log_tail=tail)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# pid -> its last log lines (50 lines a server, kept after it stops, for a report made afterwards).
_LOG_TAILS: dict[int, deque[str]] = {}


def _drain(stream: Any, keep: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        keep.append(raw.decode("utf-8", "replace"))


def server_log_tail(proc: subprocess.Popen[bytes]) -> list[str]:
    """The last lines a server started by `server` wrote to its stderr."""
    return list(_LOG_TAILS.get(proc.pid, ()))


async def poll_healthz(session: Any, base: str, stop: asyncio.Event, every_s: float) -> list[float]:
    """`/healthz` latencies in ms, one request every `every_s` (on a fixed schedule), until `stop` is set: how
    long the server's loop keeps a cheap request waiting while a benchmark loads it."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{base}/healthz") as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append((time.perf_counter() - started) * 1000)
        next_at += every_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return latencies


async def append_updates(store: Any, docs: Iterable[dict[str, Any]], batch: int = 5000) -> None:
    """Append every document to `updates`, `batch` at a time without waiting for each (a fill is a set-up
    step: the store's group commit takes them in batches)."""
    pending = []
    for doc in docs:
        pending.append(store.append_nowait("update", "updates", doc))
        if len(pending) >= batch:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)
