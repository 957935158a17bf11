"""live.Broker without HTTP (fake transports), and the SSE parser the stream tests rely on."""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sse import reader_over

from fieldcomms import live
from fieldcomms.config import Settings
from fieldcomms.live import Broker, Subscriber, change_type, raise_open_files_limit
from fieldcomms.services import Services
from fieldcomms.store import Store
from fieldcomms.store.store import Change
from fieldcomms.visibility import Viewer

CONTROL = Viewer("usr_c", "control1", "control")
OFFICER = Viewer("usr_o", "officer1", "officer")


class FakeTransport:
    def __init__(self, stuck: bool = False) -> None:
        self.writes: list[bytes] = []
        self.stuck = stuck
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.writes)) if self.stuck else 0

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=str(tmp_path), fsync=False, sse_buffer_bytes=4096, sse_ring_size=4)
    store = Store(tmp_path, fsync=False)
    context = Services(settings, store)
    await store.open()
    yield context
    await store.close()


@pytest.fixture
async def broker(ctx: Services) -> AsyncIterator[Broker]:
    b = Broker(ctx)
    b.start()
    yield b
    await b.stop()


def subscribe(broker: Broker, viewer: Viewer | None, transport: FakeTransport, live_: bool = True) -> Subscriber:
    loop = asyncio.get_running_loop()
    sub = Subscriber("ev", viewer, transport, True, loop.create_future(), broker.published_seq,  # type: ignore[arg-type]
                     loop.time())
    sub.live = live_
    broker._subs.setdefault("ev", {})[sub] = None
    if not live_:
        broker._replaying.setdefault("ev", {})[sub] = None
    return sub


def update(seq: int, visibility: str = "public", **extra: Any) -> Change:
    doc = {"id": f"upd_{seq}", "seq": seq, "event": "ev", "author": {"id": "usr_o", "callsign": "officer1"},
           "text": "x" * 100, "visibility": visibility, "status": "active", "zones": [], "photos": [],
           "reply_to": None, **extra}
    return Change(seq, "update", "updates", doc)


async def turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_each_change_is_serialised_once_per_audience(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = live.stream_view

    def counting(coll: str, item: Any, viewer: Viewer | None, lookup: Any, *rest: Any) -> Any:
        calls.append(viewer)
        return real(coll, item, viewer, lookup, *rest)

    monkeypatch.setattr(live, "stream_view", counting)
    public = [FakeTransport() for _ in range(50)]
    staff = [FakeTransport() for _ in range(5)]
    for t in public:
        subscribe(broker, None, t)
    for t in staff:
        subscribe(broker, CONTROL, t)
    broker.publish(update(1))
    await turn()
    assert calls == [None, CONTROL]
    assert all(t.writes == public[0].writes for t in public) and len(public[0].writes) == 1
    assert all(t.writes[0] is public[0].writes[0] for t in public)  # the very same bytes
    assert b"id: 1\nevent: update\ndata: {" in public[0].writes[0]


async def test_changes_of_one_moment_go_out_as_one_write(broker: Broker) -> None:
    t = FakeTransport()
    subscribe(broker, None, t)
    for seq in (1, 2, 3):
        broker.publish(update(seq))
    await turn()
    assert len(t.writes) == 1
    assert t.writes[0].count(b"event: update") == 3


async def test_a_stuck_subscriber_is_dropped_and_the_others_carry_on(broker: Broker) -> None:
    stuck, fine = FakeTransport(stuck=True), FakeTransport()
    stuck_sub = subscribe(broker, None, stuck)
    subscribe(broker, None, fine)
    for seq in range(1, 40):
        broker.publish(update(seq))  # publish returns at once whatever the clients do
        await turn()
    assert stuck.closed and stuck_sub.done.done()
    assert broker.stats() == {"subscribers": 1, "dropped": 1, "published_seq": 39}
    # Every change reached the healthy subscriber, once and in order (several may share one write).
    delivered = b"".join(fine.writes)
    assert [int(x) for x in re.findall(rb"\nid: (\d+)\n", b"\n" + delivered)] == list(range(1, 40))


async def test_a_change_published_during_a_pass_joins_it(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass writes SLICE subscribers per turn of the loop. A change published meanwhile reaches the
    subscribers not yet visited in the same write as the earlier ones, and the others in the next pass."""
    monkeypatch.setattr(live, "SLICE", 2)
    ts = [FakeTransport() for _ in range(6)]
    for t in ts:
        subscribe(broker, None, t)
    broker.publish(update(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the pass has begun: two subscribers have change 1
    assert [len(t.writes) for t in ts] == [1, 1, 0, 0, 0, 0]
    broker.publish(update(2))
    for _ in range(10):
        await asyncio.sleep(0)
    ids = [[re.findall(rb"id: (\d+)\n", w) for w in t.writes] for t in ts]
    assert ids[:2] == [[[b"1"], [b"2"]]] * 2  # visited before change 2: it came in the next pass
    assert ids[2:] == [[[b"1", b"2"]]] * 4  # visited after it: both in one write
    assert broker.passes == 2 and broker._fans == {}  # nothing left to deliver, nothing kept


async def test_a_pass_yields_to_the_loop_between_slices(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "SLICE", 10)
    ts = [FakeTransport() for _ in range(100)]
    for t in ts:
        subscribe(broker, None, t)
    broker.publish(update(1))
    turns = 0
    while not ts[-1].writes:
        await asyncio.sleep(0)  # another task gets a turn while the pass is under way
        turns += 1
    assert turns >= 10 and all(len(t.writes) == 1 for t in ts)


async def test_internal_changes_and_positions_do_not_reach_the_public(broker: Broker) -> None:
    public, officer, control = FakeTransport(), FakeTransport(), FakeTransport()
    subscribe(broker, None, public)
    subscribe(broker, OFFICER, officer)
    subscribe(broker, CONTROL, control)
    broker.publish(update(1, "internal"))
    broker.publish(Change(2, "position", "positions", {
        "id": "pos_ev_usr_o", "seq": 2, "event": "ev", "officer": {"id": "usr_o", "callsign": "officer1"},
        "location": {"lat": 1.0, "lon": 2.0, "source": "device"}, "at": "2026-01-01T00:00:00Z", "track": [],
        "_at": 0.0}))
    await turn()
    assert public.writes == []
    assert b"event: update" in officer.writes[0] and b"position" not in officer.writes[0]
    assert b"event: position" in control.writes[0] and b"_at" not in control.writes[0]


async def test_changes_are_held_while_a_subscriber_replays(broker: Broker) -> None:
    t = FakeTransport()
    sub = subscribe(broker, None, t, live_=False)
    broker.publish(update(1))
    await turn()
    assert t.writes == [] and [e.change.seq for e in sub.held] == [1]


async def test_replay_from_the_ring_or_the_store_or_a_reset(ctx: Services, broker: Broker) -> None:
    for i in range(6):  # ring of 4: seqs 3..6 stay
        await ctx.store.append("update", "updates", {**update(0).data, "id": f"upd_{i}", "text": f"t{i}"})
    await turn()
    start = broker.published_seq

    async def replay(since: int) -> tuple[list[bytes], int]:
        # _replay gives entries, framed as they are written (_write_replay), and frames of its own (reset)
        items, floor = await broker._replay("ev", None, since, start)
        return [broker.replayed_frame(i, None) for i in items if i is not None], floor

    frames, floor = await replay(3)
    assert floor == start and [f.split(b"\n")[0] for f in frames] == [b"id: 4", b"id: 5", b"id: 6"]
    frames, _ = await replay(1)  # older than the ring: from the store
    assert [f.split(b"\n")[0] for f in frames] == [b"id: 2", b"id: 3", b"id: 4", b"id: 5", b"id: 6"]
    frames, floor = await replay(start + 5)
    assert frames[0].startswith(b"id: %d\nevent: reset\n" % start) and floor == start
    frames, floor = await replay(start)
    assert frames == [] and floor == start


def test_change_types_for_store_replays() -> None:
    assert change_type("updates", {"status": "active"}) == "update"
    assert change_type("updates", {"status": "retracted"}) == "update-retracted"
    assert change_type("zones", {"deleted": True}) == "zone-deleted"
    assert change_type("zones", {"deleted": False}) == "zone"
    assert [change_type(c, {}) for c in ("rumours", "positions", "alerts")] == ["rumour", "position", "alert"]


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        raise_open_files_limit()
        new_soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert new_soft == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- the SSE parser used by the stream tests ---------------------------------------------------------------


async def test_parser_line_endings_split_anywhere() -> None:
    raw = b"retry: 3000\r\n\r\nid: 7\revent: update\r\ndata: a\ndata:b\r\n\r\n: keep-alive\n\ndata: c\r"
    for cut in range(len(raw) + 1):
        reader = reader_over([c for c in (raw[:cut], raw[cut:], b"\n\n") if c])  # b"" is the end of a stream
        first = await reader.next()
        second = await reader.next()
        assert first is not None and (first.type, first.id, first.data, first.retry) == ("update", "7", "a\nb", 3000)
        assert second is not None and (second.type, second.data, second.id) == ("message", "c", "7")
        assert await reader.next() is None
        assert reader.comments == ["keep-alive"]


async def test_parser_edge_cases() -> None:
    reader = reader_over([b"\xef\xbb\xbfdata\n\nid: a\x00b\nretry: 1x\ndata:  two spaces\n\nevent: x\n\ndata: cut off"])
    empty = await reader.next()
    assert empty is not None and empty.data == ""  # "data" with no colon is an empty data line
    spaced = await reader.next()
    assert spaced is not None and (spaced.data, spaced.id, spaced.retry) == (" two spaces", "", None)
    assert await reader.next() is None  # "event: x" alone dispatches nothing; an unterminated event is dropped
