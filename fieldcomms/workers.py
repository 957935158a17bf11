"""`fieldcomms serve --workers N`: N serving processes on one port, each a full worker on PostgreSQL.

The supervisor only starts, watches and stops them; the kernel spreads connections over the workers
(SO_REUSEPORT). A worker that dies (a crash, SIGKILL) is started again; nothing acknowledged is lost
because every acknowledged change is committed in PostgreSQL before its 201.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

from .config import Settings

RESTART_PAUSE_S = 1.0


def supervise(settings: Settings, argv: list[str]) -> int:
    if not settings.database_url:
        print("fieldcomms: cannot serve: --workers above 1 needs --database-url (PostgreSQL); the embedded "
              "store serves one process", file=sys.stderr)
        return 2
    env = {**os.environ, "FIELDCOMMS_WORKER_OF": str(os.getpid())}

    def start(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "fieldcomms", *argv, "--worker-index", str(index)], env=env)

    procs = [start(i) for i in range(settings.workers)]
    print(f"fieldcomms: {settings.workers} workers on port {settings.port}: pids "
          + " ".join(str(p.pid) for p in procs), flush=True)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    status = 0
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is None:
                continue
            if code != 0 and time.monotonic() - started < 10 and code > 0:
                # It could not start (a bad URL, an unreachable or too new database): say so once, stop all.
                stopping.append(0)
                status = code
                break
            print(f"fieldcomms: worker {proc.pid} exited ({code}); starting another", file=sys.stderr, flush=True)
            time.sleep(RESTART_PAUSE_S)
            procs[i] = start(i)
            print(f"fieldcomms: worker {i} is now pid {procs[i].pid}", flush=True)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return status
