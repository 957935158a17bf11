"""What replays (live.py) share: the loop's one replay turn (`ReplayGate`, `Turn`) and the encoded frames of
replayed changes (`FrameCache`); and the few streams set up or ended per turn of the loop (`PerTurn`).

The gate. A replay walks the store and frames items a slice at a time (REPLAY_SLICE_S). Replays used to
yield with a lock they gave up before yielding, so every replay under way took a slice in every turn of the
loop: 200 clients reconnecting with `since` made each turn of the loop last 200 slices (measured: turns of
1-2 s, /healthz p50 3-8 s under `make bench BENCH=abuse`'s 5,000-item flood). Here one turn is handed from
replay to replay in arrival order and is never free while a replay wants it: between two turns of the loop
at most one slice of replay work runs, however many replays are under way, and everything else the loop has
to do (a /healthz, a POST, a delivery pass) runs in between.

The frames. The public all see the same frame of a change, and so do the viewers of one audience
(`visibility.audience_key`): 200 public clients replaying the same range need each frame made once, not 200
times. A frame is reused only while it would be made again identically: the cache entry remembers the very
document objects that `visibility.stream_view` was given and consulted (the item, its current version, any
item a rule looked up, e.g. the update an update replies to, a rebuttal's update, a rumour's pending answer),
and a hit requires each of them still to be the object the store holds now. Any change to any of them (a
retraction, a new answer, even an in-place purge, which calls no hook) makes the entry a miss, and the frame
is made again through visibility. Frames whose rendering depends on the time (positions) or on a lookup that
cannot be checked this way (`photo_updates`) are not cached. The cache is an LRU bounded in bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Hashable, Iterable
from typing import Any

from .visibility import Item, Resolver

_MISSING = object()
REPLAY_CACHE_BYTES = 32 * 1024 * 1024  # the frames kept for replays, all events and audiences together
# Streams set up (and ended) per turn of the loop (PerTurn). Measured under 200 clients reconnecting with
# since=0 (load average ~7): /healthz p50 32 ms, p99 190 ms with 4; p50 72 ms with 16; p50 ~200 ms without.
OPENS_PER_TURN = 4
ENTRY_BYTES = 200  # what an entry costs besides its frame (an empty frame, for a viewer who sees nothing, too)


def _cost(frame: bytes) -> int:
    # The entry also holds the documents it was made from: once they are replaced in the store, only the entry
    # keeps them alive, so they are counted, as about the frame's size again.
    return 2 * len(frame) + ENTRY_BYTES


class ReplayGate:
    """One turn for all replays, handed on in arrival order (see the module docstring)."""

    __slots__ = ("busy", "waiters")

    def __init__(self) -> None:
        self.busy = False
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if not self.busy:
            self.busy = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the turn was handed to us as we were cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def release(self) -> None:
        """Hand the turn to the first replay waiting (it stays taken: no one can cut in), else free it."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.busy = False


class Turn:
    """A replay's hold on the gate: held while it frames or walks, given up while it waits for its client."""

    __slots__ = ("gate", "held")

    def __init__(self, gate: ReplayGate) -> None:
        self.gate = gate
        self.held = False

    async def __aenter__(self) -> Turn:
        await self.gate.acquire()
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.held = False
            self.gate.release()

    async def pause(self, wait: Awaitable[Any] | None = None) -> None:
        """Let the loop run (and, while waiting for `wait`, the other replays), then take the turn again at the
        back of the queue. With no other replay waiting and nothing to wait for, the turn is kept across one
        turn of the loop: the loop's other work runs, and no replay can start a slice meanwhile."""
        gate = self.gate
        if wait is None and not gate.waiters:
            await asyncio.sleep(0)
            return
        self.held = False
        gate.release()
        if wait is not None:
            await wait
        await gate.acquire()  # cancelled while waiting here: not held, and acquire has handed the turn on
        self.held = True


class Recorder:
    """The resolver given to visibility while a frame is made: it notes every item a rule consults."""

    __slots__ = ("inner", "seen", "checkable")

    def __init__(self, inner: Resolver) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, Item | None]] = []
        self.checkable = True

    def get(self, coll: str, item_id: str) -> Item | None:
        doc = self.inner.get(coll, item_id)
        self.seen.append((coll, item_id, doc))
        return doc

    def photo_updates(self, photo_id: str) -> Iterable[Item]:
        self.checkable = False  # which updates hold a photo: not a single object to compare later
        return self.inner.photo_updates(photo_id)


class FrameCache:
    """(seq, change type, audience key) -> the frame, with what it was made from (see the module docstring)."""

    def __init__(self, store: Resolver, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        # key -> (frame, the item object framed, ((coll, id, object the store held), ...))
        self._frames: OrderedDict[Hashable, tuple[bytes, Item, tuple[tuple[str, str, Item | None], ...]]] = (
            OrderedDict())

    def get(self, key: Hashable, data: Item) -> bytes | None:
        entry = self._frames.get(key)
        if entry is None:
            self.misses += 1
            return None
        frame, item, deps = entry
        get = self.store.get
        if item is not data or any(get(coll, item_id) is not doc for coll, item_id, doc in deps):
            self._drop(key)  # made from something that has changed since: made again through visibility
            self.misses += 1
            return None
        self._frames.move_to_end(key)
        self.hits += 1
        return frame

    def put(self, key: Hashable, frame: bytes, data: Item, recorder: Recorder) -> None:
        if not recorder.checkable or len(frame) > self.max_bytes // 16:
            return
        self._drop(key)
        self._frames[key] = (frame, data, tuple(recorder.seen))
        self.size += _cost(frame)
        while self.size > self.max_bytes and self._frames:
            self._drop(next(iter(self._frames)))

    def _drop(self, key: Hashable) -> None:
        entry = self._frames.pop(key, _MISSING)
        if entry is not _MISSING:
            self.size -= _cost(entry[0])  # type: ignore[index]

    def __len__(self) -> int:
        return len(self._frames)


class PerTurn:
    """At most `per_turn` callers go on in one turn of the loop; the others wait, in arrival order, for the
    turns after. Streams opened (Broker.serve) pass through one: a reconnect storm of hundreds of clients is
    set up a few per turn of the loop, with every other request answered in between, instead of all of them
    in one turn that lasts as long as hundreds of stream set-ups (the clients waiting cost a socket each)."""

    __slots__ = ("per_turn", "used", "waiters", "_handle")

    def __init__(self, per_turn: int) -> None:
        self.per_turn = max(1, per_turn)
        self.used = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self._handle: asyncio.Handle | None = None

    async def wait(self) -> None:
        if self.used < self.per_turn and not self.waiters:
            self.used += 1
            self._schedule()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self._schedule()
        try:
            await fut
        except asyncio.CancelledError:
            if not fut.done():
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def _schedule(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._handle = None
        self.used = 0
        while self.waiters and self.used < self.per_turn:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.used += 1
        if self.used or self.waiters:
            self._schedule()
