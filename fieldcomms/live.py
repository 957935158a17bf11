"""live.Broker: the event stream (Server-Sent Events) to many subscribers from one process.

The store calls `publish` once a change is durable, in seq order. `publish` never waits for a client:
it puts the change in the event's replay ring and in the event's list of changes still to deliver, and
starts a delivery pass if none is running.

A pass walks the event's subscribers in slices of `SLICE`, yielding to the loop between slices so requests
are answered meanwhile. Each subscriber visited gets, in one write, every change after the last one it was
sent (`floor`), so a change published during a pass reaches the subscribers not yet visited in that same pass
and the others in the next one, which starts at once: a change waits at most about one pass, and under load
the changes of one pass go out together instead of one write per change. The bytes are framed once per
audience (`visibility.audience_key`: the public, officers, control, and per officer where it matters, e.g.
alerts) and shared by every subscriber of that audience, written straight to its transport. There is no task
or queue per subscriber: the transport's write buffer is the bounded queue and the kernel is its writer. A
subscriber whose unsent bytes pass `sse_buffer_bytes` is disconnected at once; its client resumes with
`Last-Event-ID`. One ticker writes the keep-alive comments and notices closed connections.

Resuming (`Last-Event-ID: N` or `?since=N`): the subscriber is registered first, so every change published
from then on is held for it; then everything after N up to that moment is replayed, from the ring when the
ring still holds all of it, else from the store (each changed item once, in its newest state, in seq
order); then the held changes follow, skipping any seq already sent. No gap, no duplicate.
A `reset` event (its id is the seq the stream continues from) tells the client to reload its lists when
N is ahead of this server (another deployment, or data lost), when N is unreadable, or when a replay from
the store would carry more than `STORE_REPLAY_MAX` items (known without walking them when it is so).

Bounds against abuse (issue 15): at most `sse_streams_per_user` streams per user and `sse_streams_per_address`
per public client address; a replay is framed a slice (REPLAY_SLICE_S) at a time, replays taking one turn on
the loop between them (live_replay.ReplayGate), and at most one piece ahead of what the client has read; its
frames come from a cache shared by each audience (live_replay.FrameCache), made through visibility and reused
only while what they were made from is unchanged; a store replay holds a (collection, document) pair per item;
streams are set up and ended a few per turn of the loop (live_replay.PerTurn); a user revoked, or given another
role, loses their streams at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_right
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11

from .domain.alerts import overdue_event
from .domain.positions import position_frame
from .domain.zones import zone_feature
from .errors import ServiceUnavailable, TooManyRequests
from .live_parts import (
    HEADERS,
    KEEPALIVE,
    REPLAY_SLICE_S,
    REPLAY_STALL_S,
    REPLAY_TOTAL_S,
    REPLAY_WRITE,
    RETRY,
    SLICE,
    STORE_REPLAY_MAX,
    STREAM_COLLS,
    Entry,
    Fanout,
    Subscriber,
    _discard,
    _tune,
    change_type,
    chunk,
    raise_open_files_limit,
    sse_frame,
)
from .live_replay import OPENS_PER_TURN, REPLAY_CACHE_BYTES, FrameCache, PerTurn, Recorder, ReplayGate, Turn
from .model import utc_now
from .store.store import Change
from .visibility import Item, Viewer, audience_key, stream_view

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

# One item of a replay: an entry of the ring, a (collection, document) of the store, ready bytes (a `reset`),
# or None once written.
Replayed = Entry | tuple[str, Item] | bytes | None


__all__ = ["STORE_REPLAY_MAX", "Broker", "Subscriber", "change_type", "raise_open_files_limit", "sse_frame"]


class Broker:
    def __init__(self, ctx: Services) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.buffer_limit = settings.sse_buffer_bytes
        self.keepalive_s = settings.sse_keepalive_s
        self.ring_size = max(1, settings.sse_ring_size)
        self.published_seq = 0
        self._start_seq = 0
        self._rings: dict[str, deque[Entry]] = {}
        self._ring_floor: dict[str, int] = {}  # the ring holds every change of the event after this seq
        self._subs: dict[str, dict[Subscriber, None]] = {}
        self._fans: dict[str, Fanout] = {}
        self._replaying: dict[str, dict[Subscriber, None]] = {}  # registered, not yet live: they hold changes
        self._clients: dict[Hashable, dict[Subscriber, None]] = {}  # open streams per user / public address
        self._turns = ReplayGate()  # replays take turns on the loop, one slice at a time (see live_replay)
        self.replay_frames = FrameCache(ctx, REPLAY_CACHE_BYTES)  # replayed frames, shared by an audience
        self._opens = PerTurn(OPENS_PER_TURN)  # streams set up a few per turn of the loop (see live_replay)
        self._ends = PerTurn(OPENS_PER_TURN)  # and ended so: the ticker finds hundreds gone at once in a storm
        self.per_user = settings.sse_streams_per_user
        self.per_address = settings.sse_streams_per_address
        self.passes = 0
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self.dropped = 0

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.published_seq = self._start_seq = self.ctx.store.last_seq
        self.ctx.store.add_listener(self.publish)
        self.ctx.store.on_apply(self._user_changed, {"users"})
        self._ticker = self._loop.create_task(self._tick())

    async def shutdown(self) -> None:
        """End every stream now, so the server can stop at once (clients reconnect to the next one)."""
        self.closing = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                self._end(sub)

    async def stop(self) -> None:
        await self.shutdown()
        with contextlib.suppress(ValueError):
            self.ctx.store.remove_listener(self.publish)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for fan in self._fans.values():
            if fan.handle is not None:
                fan.handle.cancel()

    def _user_changed(self, coll: str, old: Item | None, new: Item) -> None:
        """A user revoked, or given another role: their streams end now (they were opened with rights the
        user no longer has); the client reconnects with its token and is refused or served anew."""
        if old is None or (not new.get("revoked") and new.get("role") == old.get("role")):
            return
        for sub in list(self._clients.get(("user", new["id"]), ())):
            self._end(sub)  # nothing more is sent to it: its stream is ended cleanly at once

    def stats(self) -> dict[str, int]:
        return {"subscribers": sum(len(s) for s in self._subs.values()), "dropped": self.dropped,
                "published_seq": self.published_seq}

    # ---- publishing --------------------------------------------------------------------------------

    def publish(self, change: Change) -> None:
        """Store listener: called on the loop, in seq order, once the change is durable. Never waits."""
        self.published_seq = max(self.published_seq, change.seq)
        event = change.data.get("event")
        if change.coll not in STREAM_COLLS or not event:
            return
        ring = self._rings.get(event)
        if ring is None:
            ring = self._rings[event] = deque(maxlen=self.ring_size)
        if len(ring) == self.ring_size:
            self._ring_floor[event] = ring[0].change.seq
        entry = Entry(change)
        ring.append(entry)
        for sub in list(self._replaying.get(event, ())):
            sub.held.append(entry)
            if len(sub.held) > self.ring_size:
                self._drop(sub)  # replaying for so long that it would fall behind anyway
        if not self._subs.get(event):
            return
        fan = self._fans.get(event)
        if fan is None:
            fan = self._fans[event] = Fanout()
        fan.entries.append(entry)
        fan.seqs.append(change.seq)
        if fan.handle is None and fan.visit is None and self._loop is not None:
            # Two hops: the requests waiting for this change (its POST) answer first, then the pass
            # starts; changes that arrive meanwhile join it.
            fan.handle = self._loop.call_soon(self._soon, event)

    def _soon(self, event: str) -> None:
        fan = self._fans.get(event)
        if fan is not None and self._loop is not None:
            fan.handle = self._loop.call_soon(self._deliver, event)

    def _frame(self, entry: Entry, viewer: Viewer | None) -> bytes:
        change = entry.change
        current = self.ctx.store.get(change.coll, change.data["id"])
        as_of = change.seq if current is None else current["seq"]
        if as_of != entry.as_of:  # changed since the frames were made: make them again, from visibility
            entry.frames = {}
            entry.as_of = as_of
        key = audience_key(change.coll, change.data, viewer, current)
        frame = entry.frames.get(key)
        if frame is None:
            seen = stream_view(change.coll, change.data, viewer, self.ctx, change.type)
            frame = b"" if seen is None else sse_frame(change.type, change.seq, self._render(change, seen))
            entry.frames[key] = frame
        return frame

    def _audience(self, entry: Entry, viewer: Viewer | None) -> Hashable:
        change = entry.change
        current = None
        if viewer is not None and change.coll == "updates" and not viewer.at_least("control"):
            current = self.ctx.store.get(change.coll, change.data["id"])
        return audience_key(change.coll, change.data, viewer, current)

    def _render(self, change: Change, seen: Item) -> Item:
        coll = change.coll
        if change.type == "alert-overdue":
            return overdue_event(change.data, change.seq)  # who this report is about, not the whole alert
        if coll == "zones" and not seen.get("deleted"):
            return zone_feature(seen)
        if coll == "positions":  # the latest point only: the track is at GET /officers
            return position_frame(seen, utc_now().timestamp(), self.ctx.settings.stale_after_minutes * 60)
        return seen

    def _deliver(self, event: str) -> None:
        """One slice of a delivery pass over the event's subscribers (see the module docstring)."""
        fan = self._fans.get(event)
        if fan is None or self._loop is None:
            return
        fan.handle = None
        if fan.visit is None:  # a new pass
            subs = self._subs.get(event)
            if not subs or not fan.entries:
                del self._fans[event]
                return
            fan.visit, fan.pos, fan.upto = list(subs), 0, fan.seqs[-1]
            self.passes += 1
        visit, start = fan.visit, fan.pos
        end = min(start + SLICE, len(visit))
        entries, seqs, shared = fan.entries, fan.seqs, fan.shared
        newest = seqs[-1]
        now = self._loop.time()
        # The hot loop: per subscriber a comparison, a dictionary lookup, a write and a size test.
        for k in range(start, end):
            sub = visit[k]
            floor = sub.floor
            if floor >= newest or not sub.live:
                continue
            i = bisect_right(seqs, floor)
            viewer = sub.viewer
            group = None if viewer is None else tuple(
                [self._audience(e, viewer) for e in entries[i:]])
            key = (i, newest, sub.chunked, group)
            data = shared.get(key)
            if data is None:
                payload = b"".join([self._frame(e, viewer) for e in entries[i:]])
                data = shared[key] = (chunk(payload) if sub.chunked else payload) if payload else b""
            sub.floor = newest
            if data:
                self._write(sub, data, now)  # may end or drop it: `visit` is a copy of the subscribers
        fan.pos = end
        if end < len(visit):
            fan.handle = self._loop.call_soon(self._deliver, event)
            return
        # The pass is over: every live subscriber has every change up to `upto` (those that went live or
        # subscribed meanwhile started at or after it), so those are forgotten here (the ring keeps them).
        fan.visit = None
        done = bisect_right(seqs, fan.upto)
        for entry in entries[:done]:
            entry.frames = {}  # the ring keeps the change for replays, which frame it again: ~2 KB less each
        del entries[:done], seqs[:done]
        fan.shared = {}
        if entries:  # changes arrived during the pass: the subscribers visited before them need them
            fan.handle = self._loop.call_soon(self._deliver, event)
        else:
            del self._fans[event]

    def _send(self, sub: Subscriber, entries: list[Entry], now: float) -> None:
        payload = b"".join([self._frame(e, sub.viewer) for e in entries])
        if entries:
            sub.floor = max(sub.floor, entries[-1].change.seq)
        if payload:
            self._write(sub, chunk(payload) if sub.chunked else payload, now)

    def signal(self, event: str, name: str, data: Item, min_role: str = "control") -> None:
        """A notice that is not a stored change (no `id:`, so no replay and no effect on Last-Event-ID), to the
        event's live subscribers of at least `min_role`: e.g. `reports-backlog` when reports are refused."""
        if self._loop is None:
            return
        frame = b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))
        now = self._loop.time()
        for sub in list(self._subs.get(event, ())):
            if sub.live and sub.viewer is not None and sub.viewer.at_least(min_role):
                self._write(sub, chunk(frame) if sub.chunked else frame, now)

    def _write(self, sub: Subscriber, data: bytes, now: float) -> None:
        transport = sub.transport
        if transport.is_closing():
            self._end(sub)
            return
        transport.write(data)
        sub.last_write = now
        if transport.get_write_buffer_size() > self.buffer_limit:
            self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        self.dropped += 1
        sub.transport.abort()  # discards what it could not send; the client resumes with Last-Event-ID
        self._end(sub)

    def _end(self, sub: Subscriber) -> None:
        _discard(self._subs, sub)
        _discard(self._replaying, sub)
        sub.live = False  # a delivery pass under way holds a copy of the subscribers: it skips this one now
        mine = self._clients.get(sub.client)
        if mine is not None:
            mine.pop(sub, None)
            if not mine:
                del self._clients[sub.client]
        sub.held = []
        if not sub.done.done():
            sub.done.set_result(None)

    async def _tick(self) -> None:
        interval = max(0.05, min(self.keepalive_s / 2, 1.0))
        due = self.keepalive_s - interval  # ticks are `interval` apart, so no silence exceeds keepalive_s
        framed = {True: chunk(KEEPALIVE), False: KEEPALIVE}
        while True:
            await asyncio.sleep(interval)
            now = asyncio.get_running_loop().time()
            seen = 0
            for subs in list(self._subs.values()):
                for sub in list(subs):
                    if sub.transport.is_closing():
                        self._end(sub)
                    elif sub.live and now - sub.last_write >= due:
                        self._write(sub, framed[sub.chunked], now)
                    seen += 1
                    if not seen % SLICE:
                        # A slice at a time, as a delivery pass: after a reconnect storm one tick finds hundreds
                        # of streams gone, and each one ended wakes its handler.
                        await asyncio.sleep(0)

    # ---- subscribing -------------------------------------------------------------------------------

    async def serve(self, request: web.Request, event: str, viewer: Viewer | None, since: int | None,
                    unreadable: bool = False, address: str = "") -> web.StreamResponse:
        """Run one subscriber's stream until it disconnects, is dropped, or the server shuts down.
        `address` is the client's rate-limit key: the public's streams are counted per address."""
        if self.closing or self._loop is None:
            raise ServiceUnavailable("The server is shutting down; reconnect in a moment.")
        # A few streams set up per turn of the loop (live_replay.PerTurn). From here to the registration below
        # nothing is awaited (prepare sends nothing: the headers go with the first write), so the count of
        # open streams checked here cannot be passed by many streams of one client opened at once.
        await self._opens.wait()
        if self.closing:
            raise ServiceUnavailable("The server is shutting down; reconnect in a moment.")
        client: Hashable = ("user", viewer.id) if viewer is not None else ("address", address)
        limit = self.per_user if viewer is not None else self.per_address
        if len(self._clients.get(client, ())) >= limit:
            whose = "this user" if viewer is not None else "this address"
            raise TooManyRequests(f"{limit} streams are already open for {whose}; close one first.", 30)
        resp = web.StreamResponse(headers=HEADERS)
        resp.force_close()
        if request.transport is None or request.transport.is_closing():
            return resp  # gone while it waited for its turn
        # The headers go out with the first write (`retry:`, and a `reset` when that is the whole replay): one
        # send per stream opened, not three (a reconnect storm opens hundreds a second). aiohttp's own switch,
        # which `web.Response` uses; aiohttp is pinned below its next minor release.
        resp._send_headers_immediately = False
        chunked = request.version >= HttpVersion11
        if chunked:
            resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
        except ConnectionResetError:
            # The client left before its stream began (a reconnect storm does this by the hundred): nothing to
            # serve, and nothing to log: a traceback per such client would flood the logs (and a full stderr
            # pipe stops the whole server).
            return resp
        transport = request.transport
        if transport is None or transport.is_closing():
            return resp
        _tune(transport, self.buffer_limit)
        # The replay is built and the subscriber registered at one moment, with nothing awaited in between:
        # the replay runs up to `start`, and every change after `start` reaches the subscriber, held or written.
        # The subscriber is registered at `start`, with nothing awaited in between: every change after it
        # reaches the subscriber, held while it replays; the replay runs up to `start` (see `_replay`).
        start = self.published_seq
        sub = Subscriber(event, viewer, transport, chunked, self._loop.create_future(), start, self._loop.time(),
                         client)
        self._subs.setdefault(event, {})[sub] = None
        self._replaying.setdefault(event, {})[sub] = None
        self._clients.setdefault(client, {})[sub] = None
        try:
            replay: list[Replayed] = []
            at_once = None if since is None and not unreadable else self._replay_at_once(event, since, start)
            if at_once is not None:
                replay, sub.floor = at_once
            head = RETRY
            if replay and all(isinstance(item, bytes) for item in replay):
                head += b"".join(replay)  # type: ignore[arg-type]
                replay = []
            await resp.write(head)  # also sends the headers
            async with asyncio.timeout(REPLAY_TOTAL_S):
                if at_once is None and (since is not None or unreadable):
                    replay, sub.floor = await self._replay(event, viewer, since, start, sub)
                await self._write_replay(resp, sub, replay)
            del replay
            if not sub.done.done():
                _discard(self._replaying, sub)
                held, sub.held = sub.held, []
                sub.live = True
                self._send(sub, [e for e in held if e.change.seq > sub.floor], self._loop.time())
            await sub.done
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            self._end(sub)
        if not self.closing:
            await self._ends.wait()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    async def _write_replay(self, resp: web.StreamResponse, sub: Subscriber, replay: list[Replayed]) -> None:
        """Frame and write a replay a slice at a time: at most REPLAY_SLICE_S of framing on the loop before
        yielding, and at most one piece (REPLAY_WRITE) framed ahead of what the client has taken, so a slow
        reader holds a piece, not its whole replay. Each written item is let go of (`replay[i] = None`).
        Replays take turns (`live_replay.ReplayGate`): however many run at once, one slice of them runs between
        two turns of the loop, so a flood of reconnections queues behind itself, not in front of other
        requests. Frames come from the shared cache (`_replay_frame`): a public replay mostly joins bytes."""
        if not replay:
            return
        clock = asyncio.get_running_loop().time
        viewer = sub.viewer
        piece: list[bytes] = []
        size = 0
        async with Turn(self._turns) as turn:
            began = clock()
            for i, item in enumerate(replay):
                if sub.done.done() or sub.transport.is_closing():
                    return  # revoked, dropped, gone or shut down meanwhile
                replay[i] = None
                frame = self.replayed_frame(item, viewer)
                if frame:
                    piece.append(frame)
                    size += len(frame)
                if size >= REPLAY_WRITE:
                    data, piece, size = b"".join(piece), [], 0
                    async with asyncio.timeout(REPLAY_STALL_S):
                        await turn.pause(resp.write(data))
                    began = clock()
                elif not i & 15 and clock() - began > REPLAY_SLICE_S:
                    await turn.pause()
                    began = clock()
        if piece and not sub.done.done():
            async with asyncio.timeout(REPLAY_STALL_S):
                await resp.write(b"".join(piece))

    def replayed_frame(self, item: Replayed, viewer: Viewer | None) -> bytes:
        """What one item of a replay (see `Replayed`) is written as, for `viewer`."""
        if isinstance(item, Entry):
            change = item.change
            return self._replay_frame(change.type, change.seq, change.coll, change.data, viewer)
        if isinstance(item, tuple):
            coll, doc = item
            return self._replay_frame(change_type(coll, doc), doc["seq"], coll, doc, viewer)
        return item or b""

    def _replay_frame(self, kind: str, seq: int, coll: str, data: Item, viewer: Viewer | None) -> bytes:
        """The frame of a replayed change for `viewer`, made through visibility.stream_view once per audience
        and shared while everything it was made from is unchanged (live_replay.FrameCache)."""
        change = Change(seq, kind, coll, data)
        if coll == "positions":  # rendered with the time (stale or not): made for each replay
            seen = stream_view(coll, data, viewer, self.ctx, kind)
            return b"" if seen is None else sse_frame(kind, seq, self._render(change, seen))
        current = None
        if viewer is not None and coll == "updates" and not viewer.at_least("control"):
            current = self.ctx.store.get(coll, data["id"])
        key = (seq, kind, audience_key(coll, data, viewer, current))
        frame = self.replay_frames.get(key, data)
        if frame is None:
            recorder = Recorder(self.ctx)
            seen = stream_view(coll, data, viewer, recorder, kind)
            frame = b"" if seen is None else sse_frame(kind, seq, self._render(change, seen))
            self.replay_frames.put(key, frame, data, recorder)
        return frame

    async def _replay(self, event: str, viewer: Viewer | None, since: int | None, start: int,
                      sub: Subscriber | None = None) -> tuple[list[Replayed], int]:
        """What to replay after `since` up to `start` for `viewer` (framed as it is written, see
        `_write_replay`), and the seq up to which live changes are skipped. `since` may be ahead of `start`
        but not of the store: a list's `last_seq` counts
        changes that are stored but not yet durable, which the stream announces a moment later.
        A replay from the store holds a (collection, document) pair per item, the documents being the
        store's own: at most STORE_REPLAY_MAX small tuples per replay."""
        at_once = self._replay_at_once(event, since, start)
        if at_once is not None:
            return at_once
        assert since is not None
        entries: list[Replayed] = []
        # Walked in slices of at most REPLAY_SLICE_S. The store's logs are safe to walk across awaits: a
        # walk sees only the entries there when it began, and an item changed since (seq > start) is
        # skipped here because it arrives live.
        too_old: list[Replayed] = [self._reset(start, "the gap is too old to replay; reload the lists")]
        clock = asyncio.get_running_loop().time
        async with Turn(self._turns) as turn:
            began = clock()
            for coll, doc in self.ctx.store.event_changes_since(event, since, STREAM_COLLS):
                if doc is None or coll not in STREAM_COLLS or doc["seq"] > start:
                    continue  # changed after `start`: it arrives live
                entries.append((coll, doc))
                if len(entries) > STORE_REPLAY_MAX:
                    return too_old, start
                if not len(entries) & 63 and clock() - began > REPLAY_SLICE_S:
                    if sub is not None and (sub.done.done() or sub.transport.is_closing()):
                        return [], start  # the client has gone: stop walking for it
                    await turn.pause()
                    began = clock()
        return entries, start

    def _replay_at_once(self, event: str, since: int | None, start: int) -> tuple[list[Replayed], int] | None:
        """The replays known without walking the store (a `reset`, nothing, the ring's entries), else None."""
        if since is None:
            return [self._reset(start, "the Last-Event-ID is not a seq from this server")], start
        if since > self.ctx.store.last_seq:
            return [self._reset(start, "the Last-Event-ID is ahead of this server")], start
        if since >= start:
            return [], since
        if since >= self._ring_floor.get(event, self._start_seq):
            ring = self._rings.get(event, deque())
            return [e for e in ring if since < e.change.seq <= start], start
        if self.ctx.store.event_changed_at_least(event, since, STREAM_COLLS) > STORE_REPLAY_MAX:
            # known without walking: `since=0` on a large event costs nothing
            return [self._reset(start, "the gap is too old to replay; reload the lists")], start
        return None

    def _reset(self, start: int, reason: str) -> bytes:
        return sse_frame("reset", start, {"reason": reason, "last_seq": start})


