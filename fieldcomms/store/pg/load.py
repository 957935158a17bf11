"""Loading a worker's view from the current-state table: a fetching thread and an applying thread, overlapped.

Measured on the 1,000,000-update deployment of `bench_cluster` (2 cores, load average 5-6): the query costs the
server 4 to 8 s of wall time but this process only 1.3 CPU-s (psycopg builds the rows in C and waits for the
socket without the GIL); decoding costs 5 s and applying (view, seq logs, every index's hook) 10 s, both holding
the GIL. Fetched on the event loop, page after page, those add up (22 to 26 s, 70 s at load average 10); here a
thread fetches the next pages on its own connection while the previous ones are decoded and applied, so the
server's time disappears under the decoding and the asyncio round trip per page goes.

One REPEATABLE READ transaction reads the counter and then the state, so the view is exactly the state at that
counter value; the follower goes on from there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from psycopg import IsolationLevel

PAGE = 20_000  # rows per FETCH: 10 MB of documents, a few ms of the server's time each
AHEAD = 4  # pages fetched ahead of the applying: bounded memory (about 40 MB) if applying is the slower side

Apply = Callable[[list[tuple[str, dict[str, Any]]]], None]


def load_state(url: str, apply: Apply, *, connect_timeout: int, page: int | None = None) -> tuple[int, bytes]:
    """Call apply([(coll, doc), ...]) a page at a time for every current document, in seq order; returns (seq, chain hash) they stand at.
    Blocking: run it in a thread. Raises what psycopg raises (the caller maps it to StoreUnavailable)."""
    pages: queue.Queue[list[tuple[str, bytes]] | BaseException | None] = queue.Queue(maxsize=AHEAD)
    head: list[tuple[int, bytes]] = []
    stop = threading.Event()  # the applying side failed: the fetcher stops instead of filling the queue

    def fetch() -> None:
        try:
            with psycopg.connect(url, connect_timeout=connect_timeout) as conn:
                conn.isolation_level = IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                with conn.transaction():
                    conn.execute("SET LOCAL jit = off")  # compiling the scan costs more than it saves here
                    row = conn.execute("SELECT seq, hash FROM fc_counter WHERE id = 1").fetchone()
                    assert row is not None
                    head.append((int(row[0]), bytes(row[1])))
                    # Binary: bytea arrives as stored (text would hex-encode it and take twice as long).
                    with conn.cursor(name="fc_load", binary=True) as cur:
                        cur.execute("SELECT coll, doc FROM fc_state WHERE seq > 0 ORDER BY seq")
                        while not stop.is_set():
                            rows = cur.fetchmany(page or PAGE)
                            if not rows:
                                break
                            _put(pages, rows, stop)
            _put(pages, None, stop)
        except BaseException as exc:  # handed to the applying side, which raises it
            _put(pages, exc, stop)

    fetcher = threading.Thread(target=fetch, name="fc-load-fetch", daemon=True)
    fetcher.start()
    loads = orjson.loads
    try:
        while True:
            item = pages.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            apply([(coll, loads(doc)) for coll, doc in item])
    finally:
        stop.set()
        fetcher.join()
    return head[0]


def _put(pages: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
