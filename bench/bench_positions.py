"""Issue 11: the size of a `position` stream frame once an officer has a long track (`position_frame_bytes`,
target <= 400), on the embedded store and on PostgreSQL, against the code before tracks had their own
collection, in the same run.

One officer reports 1,000 positions (one a second of handset time, as `POST /positions` with `at`); a control
user's stream (raw HTTP/1.1 over a socket, read in a thread) receives a `position` frame for each. A frame is
counted whole: its `id:`, `event:` and `data:` lines and the blank line ending it (chunked transfer framing
not included). Reported: the largest frame, the frames at the 1st, 20th and 1,000th position, and the frame
size of the baseline tree (the merge base with `main`, exported with `git archive`, or the tree named by
FIELDCOMMS_BENCH_BASELINE_ROOT), whose position document carried the last 20 points of the track. Also the
POST latency (p50/p99, one client, sequential, fsync on) and the size and time of `GET /officers` with the
whole track. The load average is recorded with the figures: the machine is shared.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .util import ROOT, free_port, median, percentile, pin, temp_dir, wait_healthy

sys.path.insert(0, str(ROOT / "tests"))
import pgdb  # noqa: E402  (the tests' helper for a database on the shared server)

TAG = "libdempolicing"
POINTS = 1000
TARGET = 400


def _cli(root: Path, *args: str) -> str:
    env = {**os.environ, "FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "fieldcomms", *args], check=True, capture_output=True, text=True,
                         cwd=root, env=env)
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def _server(root: Path, where: list[str]) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([*pin(0), sys.executable, "-m", "fieldcomms", "serve", "--port", str(port), *where],
                            env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class StreamReader(threading.Thread):
    """A control stream: collects each `position` frame's bytes."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /api/v1/events/{TAG}/stream HTTP/1.1\r\nHost: bench\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n".encode())
        self.frames: list[bytes] = []
        self.done = threading.Event()

    def run(self) -> None:
        buffer = b""
        headers_done = False
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            if not headers_done:
                if b"\r\n\r\n" not in buffer:
                    continue
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head
                headers_done = True
            while True:  # the complete chunks of the chunked body
                size_end = buffer.find(b"\r\n")
                if size_end < 0:
                    break
                size = int(buffer[:size_end], 16)
                if len(buffer) < size_end + 2 + size + 2:
                    break
                self._sse(buffer[size_end + 2:size_end + 2 + size])
                buffer = buffer[size_end + 2 + size + 2:]

    _pending = b""

    def _sse(self, data: bytes) -> None:
        self._pending += data
        while b"\n\n" in self._pending:
            frame, _, self._pending = self._pending.partition(b"\n\n")
            frame += b"\n\n"
            if b"\nevent: position\n" in frame:
                self.frames.append(frame)
                if len(self.frames) >= POINTS:
                    self.done.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _request(conn: http.client.HTTPConnection, method: str, path: str, token: str,
             body: Any = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _measure(root: Path, where: list[str], control: str, officer: str) -> dict[str, Any]:
    with _server(root, where) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, body = _request(conn, "POST", "/api/v1/events", control,
                                {"tag": TAG, "title": "Positions", "status": "live"})
        assert status == 201, body
        reader = StreamReader(port, control)
        reader.start()
        time.sleep(0.3)  # the subscription is registered before the first position
        start = datetime.now(UTC) - timedelta(seconds=POINTS + 60)
        latencies = []
        for i in range(POINTS):
            at = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            sent = time.perf_counter()
            status, body = _request(conn, "POST", f"/api/v1/events/{TAG}/positions", officer,
                                    {"lat": 53.38 + i / 100000, "lon": -1.47 - i / 100000, "accuracy_m": 12.5,
                                     "at": at})
            latencies.append((time.perf_counter() - sent) * 1000)
            assert status == 204, body
        reader.done.wait(30)
        reader.close()
        frames = reader.frames
        assert len(frames) == POINTS, f"{len(frames)} position frames of {POINTS}"
        sent = time.perf_counter()
        status, body = _request(conn, "GET", f"/api/v1/events/{TAG}/officers", control)
        officers_ms = (time.perf_counter() - sent) * 1000
        assert status == 200, body
        track = len(json.loads(body)["items"][0].get("track", []))
        conn.close()
    sizes = [len(f) for f in frames]
    return {"frame_bytes_max": max(sizes), "frame_bytes_1": sizes[0], "frame_bytes_20": sizes[19],
            "frame_bytes_1000": sizes[-1], "frame_example": frames[-1].decode(),
            "post_p50_ms": round(median(latencies), 2), "post_p99_ms": round(percentile(latencies, 99), 2),
            "officers_bytes": len(body), "officers_ms": round(officers_ms, 1), "officers_track_points": track}


def _embedded(root: Path) -> dict[str, Any]:
    with temp_dir("fc-bench-pos-") as d:
        data = d / "data"
        control = _cli(root, "user", "add", "--data-dir", str(data), "--name", "c", "--callsign", "ctl1",
                       "--role", "control")
        officer = _cli(root, "user", "add", "--data-dir", str(data), "--name", "o", "--callsign", "SY-1234",
                       "--role", "officer")
        return _measure(root, ["--data-dir", str(data)], control, officer)


def _pg(root: Path) -> dict[str, Any]:
    name = pgdb.create_database()
    url = f"{pgdb.SERVER}/{name}"
    try:
        with temp_dir("fc-bench-pos-pg-") as d:
            control = _cli(root, "user", "add", "--database-url", url, "--name", "c", "--callsign", "ctl1",
                           "--role", "control")
            officer = _cli(root, "user", "add", "--database-url", url, "--name", "o", "--callsign", "SY-1234",
                           "--role", "officer")
            return _measure(root, ["--database-url", url, "--data-dir", str(d / "data")], control, officer)
    finally:
        pgdb.drop_database(name)


@contextlib.contextmanager
def _baseline_tree() -> Iterator[tuple[Path, str]]:
    given = os.environ.get("FIELDCOMMS_BENCH_BASELINE_ROOT")
    if given:
        yield Path(given), given
        return
    base = subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with temp_dir("fc-bench-pos-base-") as d:
        archive = d / "tree.tar"
        subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), base], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(d / "tree", filter="data")
        yield d / "tree", base[:12]


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


def _view_bytes_per_point(per_point: bool, n: int = 200_000) -> float:
    """What a worker's in-memory view holds per track point, loaded from JSON as at start: one document per
    point (the first layout tried) or the ten-minute documents of domain/positions.py (20 points each)."""
    import gc

    import orjson

    from fieldcomms.domain.positions import BUCKET_MS
    from fieldcomms.store.memory import MemoryView

    view = MemoryView()
    officer = {"id": "usr_" + "x" * 16, "callsign": "SY-1234"}
    t0 = 1_765_000_000_000
    if per_point:
        lines = [orjson.dumps({"id": f"trk_{TAG}_{officer['id']}_{t0 + i * 30_000}_{i:08x}", "event": TAG,
                               "officer": officer, "lat": 53.38 + i / 1e6, "lon": -1.47 - i / 1e6,
                               "accuracy_m": 12.5, "at": "2026-12-06T08:00:00Z", "seq": i + 1}) for i in range(n)]
    else:
        lines = [orjson.dumps({"id": f"trk_{TAG}_{officer['id']}_{t0 + b * BUCKET_MS}", "event": TAG,
                               "officer": officer, "seq": b + 1,
                               "points": [[t0 + b * BUCKET_MS + k * 30_000, 53.38 + (b * 20 + k) / 1e6,
                                           -1.47 - (b * 20 + k) / 1e6, 12.5] for k in range(20)]})
                 for b in range(n // 20)]
    gc.collect()
    before = _rss_kb()
    for line in lines:
        view._apply("tracks", orjson.loads(line), new=True)
    gc.collect()
    return round((_rss_kb() - before) * 1024 / n, 1)


def run() -> dict[str, Any]:
    load_before = os.getloadavg()
    runs = [_embedded(ROOT) for _ in range(2)]
    pg_ok = pgdb.server_reachable() is None
    pg_runs = [_pg(ROOT) for _ in range(2)] if pg_ok else []
    with _baseline_tree() as (tree, name):
        baseline = _embedded(tree)
    best = max(r["frame_bytes_max"] for r in runs + pg_runs)
    out: dict[str, Any] = {
        "position_frame_bytes": best,
        "position_frame_target_bytes": TARGET,
        "position_frame_bytes_embedded": [r["frame_bytes_max"] for r in runs],
        "position_frame_bytes_pg": [r["frame_bytes_max"] for r in pg_runs],
        "position_frame_bytes_at_1_20_1000": [runs[0]["frame_bytes_1"], runs[0]["frame_bytes_20"],
                                              runs[0]["frame_bytes_1000"]],
        "position_frame_example": runs[0]["frame_example"],
        "position_frame_bytes_baseline": baseline["frame_bytes_max"],
        "position_frame_bytes_baseline_at_1_20_1000": [baseline["frame_bytes_1"], baseline["frame_bytes_20"],
                                                       baseline["frame_bytes_1000"]],
        "position_frame_ratio_vs_baseline": round(best / baseline["frame_bytes_max"], 3),
        "position_baseline_tree": name,
        "position_post_p50_ms_embedded": [r["post_p50_ms"] for r in runs],
        "position_post_p99_ms_embedded": [r["post_p99_ms"] for r in runs],
        "position_post_p50_ms_pg": [r["post_p50_ms"] for r in pg_runs],
        "position_post_p99_ms_pg": [r["post_p99_ms"] for r in pg_runs],
        "position_post_p50_ms_baseline": baseline["post_p50_ms"],
        "position_post_p99_ms_baseline": baseline["post_p99_ms"],
        "officers_track_points": runs[0]["officers_track_points"],
        "officers_track_points_baseline": baseline["officers_track_points"],
        "officers_bytes_1000_points": runs[0]["officers_bytes"],
        "officers_ms_1000_points": [r["officers_ms"] for r in runs + pg_runs],
        "track_view_bytes_per_point": _view_bytes_per_point(False),
        "track_view_bytes_per_point_one_doc_each": _view_bytes_per_point(True),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "how": "1 officer, 1,000 positions (POST /positions, sequential, fsync on), a control stream counting "
               "each position frame whole (id, event, data lines and the blank line); 2 runs embedded, 2 on "
               "PostgreSQL (127.0.0.1:5432), 1 of the baseline tree (embedded) in the same run",
    }
    print(f"position_frame_bytes {best} (target {TARGET}); baseline {baseline['frame_bytes_max']}; "
          f"embedded {out['position_frame_bytes_embedded']}, pg {out['position_frame_bytes_pg']}")
    return out
