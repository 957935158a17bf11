"""The parts of the live stream below the broker (live.py): SSE framing, the per-change `Entry`, the
`Subscriber` and the per-event `Fanout`, and socket tuning (the replays' turn and shared frames: live_replay.py).
Plain data and small helpers; the broker's behaviour is described in live.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Hashable
from typing import Any

import orjson

from .store.store import Change
from .visibility import Item, Viewer

log = logging.getLogger(__name__)

# Never "audit": the access log does not go out on any stream. "answers": a rumour's pending answer changed;
# staff get the rumour (visibility._answers), the public nothing.
STREAM_COLLS = frozenset({"updates", "rumours", "zones", "positions", "alerts", "decisions", "answers"})
STORE_REPLAY_MAX = 10_000
REPLAY_WRITE = 64 * 1024  # replay is written in pieces this large, each waiting for the client
REPLAY_STALL_S = 30.0  # a client that takes no replay data for this long is dropped
REPLAY_TOTAL_S = 120.0  # and one whose whole replay takes longer: it resumes from where it got to
# A replay is framed on the loop in slices of at most this long, so a flood of `since=0` never holds it.
REPLAY_SLICE_S = 0.003
# Subscribers written per turn of the loop during a delivery pass: about 3 ms of loopback writes, so a request
# waits that long at most for each of its few hops through the loop (at 500 the soak's post p50 was 71 ms).
SLICE = 200
RETRY = b"retry: 3000\n\n"
KEEPALIVE = b": keep-alive\n\n"
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache, no-transform",
           "X-Accel-Buffering": "no"}


def change_type(coll: str, doc: Item) -> str:
    """The stream event a stored item's newest state is announced as (for replays from the store)."""
    if coll == "updates":
        return "update-retracted" if doc.get("status") == "retracted" else "update"
    if coll == "zones":
        return "zone-deleted" if doc.get("deleted") else "zone"
    return {"rumours": "rumour", "answers": "rumour", "positions": "position", "alerts": "alert",
            "decisions": "decision"}[coll]


def sse_frame(event: str, seq: int, data: Any) -> bytes:
    # orjson never emits a newline, so the data is one `data:` line.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), orjson.dumps(data))


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Entry:
    """A change and its frames, one per audience key, made when first needed. The frames hold for as long as
    the change's item has not changed again (`as_of`): once it has, what a viewer may see of the old version
    can differ (a retracted update is not shown again to someone replaying from before it). Once every live
    subscriber has the change the frames are dropped: the replay ring holds 10,000 changes, and a replay
    makes the frames again."""

    __slots__ = ("change", "frames", "as_of")

    def __init__(self, change: Change) -> None:
        self.change = change
        self.frames: dict[Hashable, bytes] = {}
        self.as_of = change.seq


class Subscriber:
    __slots__ = ("event", "viewer", "transport", "chunked", "done", "live", "held", "floor", "last_write",
                 "client")

    def __init__(self, event: str, viewer: Viewer | None, transport: asyncio.Transport, chunked: bool,
                 done: asyncio.Future[None], floor: int, now: float, client: Hashable = None) -> None:
        self.client = client  # ("user", id) or ("address", key): whose share of streams this is
        self.event = event
        self.viewer = viewer
        self.transport = transport
        self.chunked = chunked
        self.done = done
        self.live = False  # False while replaying: published changes are held, then sent
        self.held: list[Entry] = []
        self.floor = floor  # changes up to this seq have been sent or need not be
        self.last_write = now


class Fanout:
    """One event's changes still to be delivered to some live subscriber, and the delivery pass over them."""

    __slots__ = ("entries", "seqs", "visit", "pos", "upto", "shared", "handle")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.seqs: list[int] = []  # the entries' seqs, for bisect
        self.visit: list[Subscriber] | None = None  # the subscribers of the pass in progress
        self.pos = 0  # the next of them to visit
        self.upto = 0  # the newest seq when the pass began: every live subscriber has it once the pass ends
        # What to write, shared by every subscriber of one audience: (first entry, newest seq, chunked,
        # audience keys) -> bytes. The public all see the same; staff share it when their keys match.
        self.shared: dict[tuple[int, int, bool, Hashable], bytes] = {}
        self.handle: asyncio.Handle | None = None


def _discard(registry: dict[str, dict[Subscriber, None]], sub: Subscriber) -> None:
    """Take a subscriber out of a per-event registry, and the event out once it has no one left."""
    subs = registry.get(sub.event)
    if subs is not None:
        subs.pop(sub, None)
        if not subs:
            del registry[sub.event]


def _tune(transport: asyncio.Transport, buffer_limit: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    # Frames go out as soon as they are written, not after the client acknowledges the previous one: asyncio
    # sets TCP_NODELAY on every TCP transport it makes, so that costs no call of ours.
    with contextlib.suppress(OSError):
        # Bound the kernel's share of a stuck client's backlog too (Linux doubles this figure); otherwise
        # it could hold megabytes per subscriber before our own limit is ever reached.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(buffer_limit, 16 * 1024))


def raise_open_files_limit() -> None:
    """One open file per subscriber: lift the soft limit to the hard one (often 1,024 -> 1,048,576)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open files limit: %s", exc)
