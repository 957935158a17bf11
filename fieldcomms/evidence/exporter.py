"""Exporting an event: the same code from the API and from `fieldcomms export`.

The bundle is built in a separate process (`python -m fieldcomms.evidence.exporter`), which loads the data
directory read-only (snapshot + journal, without the lock, repairing nothing), and writes the zip to its
standard output. The server streams that pipe to the client: building 100,000 updates' GeoJSON, CSV and KML
is CPU work that would hold the GIL, and so the event loop, if it ran in a thread of the server. The
command line calls `export_to` in its own process, so it works beside a running server too.

On PostgreSQL (`database_url`) the process reads the one event from one snapshot of the database
(evidence/pgsource.py) instead of a data directory; the data directory still holds the originals and the
signing key. The URL reaches the process through its environment, never its command line (which any user of
the machine can read in the process list, with any password the URL carries).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, Any

import orjson

from ..config import Settings
from ..store import Store
from .bundle import Bundle, NoSuchEvent, write_bundle
from .signing import SigningKey

CHUNK = 256 * 1024
DATABASE_ENV = "FIELDCOMMS_EXPORT_DATABASE_URL"
WAIT_FOR_SEQ_S = 10.0


def export_to(out: IO[bytes], *, data_dir: Path, tag: str, reason: str, generated_by: dict[str, Any],
              min_seq: int = 0, database_url: str = "") -> Bundle:
    if database_url:
        return _export_from_database(out, data_dir=data_dir, database_url=database_url, tag=tag, reason=reason,
                                     generated_by=generated_by, min_seq=min_seq)
    from ..services import Services

    store = Store(data_dir)
    services = Services(Settings(data_dir=str(data_dir)), store)
    deadline = time.monotonic() + WAIT_FOR_SEQ_S
    store.load_read_only()
    while store.last_seq < min_seq and time.monotonic() < deadline:
        time.sleep(0.1)
        store = Store(data_dir)
        services = Services(Settings(data_dir=str(data_dir)), store)
        store.load_read_only()
    key = SigningKey.load_or_create(data_dir)
    return write_bundle(out, data_dir=data_dir, store=store, resolver=services, tag=tag, reason=reason,
                        generated_by=generated_by, key=key)


def _export_from_database(out: IO[bytes], *, data_dir: Path, database_url: str, tag: str, reason: str,
                          generated_by: dict[str, Any], min_seq: int) -> Bundle:
    from .pgsource import StaleDatabase, load_event

    deadline = time.monotonic() + WAIT_FOR_SEQ_S
    while True:
        try:
            view = load_event(database_url, tag, min_seq)
            break
        except StaleDatabase:  # never on one primary (the entry committed first); a replica may lag
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    key = SigningKey.load_or_create(data_dir)
    return write_bundle(out, data_dir=data_dir, store=view, resolver=view, tag=tag, reason=reason,
                        generated_by=generated_by, key=key, history=view.position_history)


async def stream_export(data_dir: Path, tag: str, reason: str, generated_by: dict[str, Any],
                        min_seq: int, database_url: str = "") -> AsyncGenerator[bytes, None]:
    """The bundle's bytes, from a worker process; ends the process if the consumer stops early."""
    env = {k: v for k, v in os.environ.items() if k != DATABASE_ENV}
    if database_url:
        env[DATABASE_ENV] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fieldcomms.evidence.exporter", "--data-dir", str(data_dir), "--tag", tag,
        "--reason", reason, "--generated-by", orjson.dumps(generated_by).decode(), "--min-seq", str(min_seq),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=_lower_priority, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.ensure_future(proc.stderr.read())
    finished = False
    try:
        while True:
            data = await proc.stdout.read(CHUNK)
            if not data:
                break
            yield data
        code = await proc.wait()
        err = (await stderr_task).decode(errors="replace").strip()
        if code != 0:
            raise ExportFailed(err.splitlines()[-1] if err else f"the export process ended with {code}")
        finished = True
    finally:
        if not finished and proc.returncode is None:
            proc.kill()
            await proc.wait()
        stderr_task.cancel()


class ExportFailed(Exception):
    pass


def _lower_priority() -> None:
    # A little below the event loop's priority, so where they share a core requests are not queued behind the
    # export (not far below: on a busy machine a nice-10 export was starved, 86 s for the bench's event). Any
    # core will do: a server pinned to one core must not pin its exporter to it too.
    os.nice(5)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fieldcomms.evidence.exporter")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--generated-by", required=True)
    p.add_argument("--min-seq", type=int, default=0)
    args = p.parse_args(argv)
    out = sys.stdout.buffer
    try:
        export_to(out, data_dir=Path(args.data_dir), tag=args.tag, reason=args.reason,
                  generated_by=orjson.loads(args.generated_by), min_seq=args.min_seq,
                  database_url=os.environ.get(DATABASE_ENV, ""))
    except BrokenPipeError:
        return 0  # the client went away; nothing to report
    except NoSuchEvent as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
