"""Replays (issue 15, item 3 and 10): frames shared by an audience, never another audience's or a stale view,
and one replay slice at a time on the loop however many replays run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fieldcomms.config import Settings
from fieldcomms.live import Broker
from fieldcomms.live_replay import PerTurn, ReplayGate, Turn
from fieldcomms.services import Services
from fieldcomms.store import Store
from fieldcomms.visibility import Viewer

CONTROL = Viewer("usr_c", "control1", "control")
AUTHOR = Viewer("usr_o", "officer1", "officer")
OTHER = Viewer("usr_p", "officer2", "officer")
SECRET = "the crowd is heading for the station"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=str(tmp_path), fsync=False, sse_ring_size=4)
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


def update(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"upd_{n}", "event": "ev", "author": {"id": AUTHOR.id, "callsign": AUTHOR.callsign},
            "text": f"{SECRET} {n}", "visibility": "public", "kind": "info", "status": "active", "zones": [],
            "photos": [], "reply_to": None, "location": {"lat": 53.38, "lon": -1.47, "source": "device"}, **extra}


async def put(ctx: Services, doc: dict[str, Any]) -> dict[str, Any]:
    kind = "update-retracted" if doc["status"] == "retracted" else "update"
    stored = await ctx.store.append(kind, "updates", doc)
    await asyncio.sleep(0)
    return stored


async def frames(broker: Broker, since: int, viewer: Viewer | None) -> list[bytes]:
    items, _ = await broker._replay("ev", viewer, since, broker.published_seq)
    return [f for f in (broker.replayed_frame(i, viewer) for i in items if i is not None) if f]


async def fill(ctx: Services, n: int) -> None:
    for i in range(n):
        await put(ctx, update(i))


async def test_public_replays_of_one_range_share_each_frame(ctx: Services, broker: Broker) -> None:
    await fill(ctx, 12)  # a ring of 4: since=0 replays from the store
    first = await frames(broker, 0, None)
    made = broker.replay_frames.misses
    second = await frames(broker, 0, None)
    assert len(first) == 12 and first == second
    assert broker.replay_frames.misses == made and broker.replay_frames.hits >= 12  # the second made none
    # control sees the same items differently (its own frames): no public frame is handed to it, nor back
    control = await frames(broker, 0, CONTROL)
    assert len(control) == 12 and all(c is not p for c, p in zip(control, first, strict=True))
    assert await frames(broker, 0, None) == first


async def test_a_retraction_reaches_cached_frames_of_older_changes(ctx: Services, broker: Broker) -> None:
    await fill(ctx, 3)
    since = broker.published_seq
    target = await put(ctx, update(9))  # in the ring: replayed one change at a time
    before = await frames(broker, since, None)
    assert len(before) == 1 and SECRET.encode() in before[0]  # made, and cached, while it was public
    await put(ctx, {**target, "status": "retracted"})
    after = await frames(broker, since, None)
    # the old change is out of sight now; the retraction comes as a tombstone without the text
    assert len(after) == 1 and b"event: update-retracted" in after[0] and SECRET.encode() not in after[0]
    store_replay = await frames(broker, 0, None)
    assert not any(b"upd_9" in f and SECRET.encode() in f for f in store_replay)


async def test_a_retracted_update_is_not_shared_between_officers(ctx: Services, broker: Broker) -> None:
    await fill(ctx, 6)
    target = await put(ctx, update(9, visibility="internal"))
    await put(ctx, {**target, "status": "retracted"})
    await fill(ctx, 6)
    author = [f for f in await frames(broker, 0, AUTHOR) if b"upd_9" in f]
    other = [f for f in await frames(broker, 0, OTHER) if b"upd_9" in f]
    assert len(author) == 1 and SECRET.encode() in author[0]  # its author still sees what they wrote
    # another officer replaying the same range after the author: a tombstone, never the author's frame
    assert len(other) == 1 and b"event: update-retracted" in other[0] and SECRET.encode() not in other[0]
    assert [f for f in await frames(broker, 0, None) if b"upd_9" in f] == []  # the public never saw it


async def test_a_frame_follows_the_items_its_view_consulted(ctx: Services, broker: Broker) -> None:
    await fill(ctx, 5)
    first = await put(ctx, update(20))
    await put(ctx, update(21, reply_to=first["id"]))
    await fill(ctx, 5)
    reply = [f for f in await frames(broker, 0, None) if b'"id":"upd_21"' in f]
    assert len(reply) == 1 and b'"reply_to":"upd_20"' in reply[0]
    # the update replied to goes internal: the reply itself is unchanged, but the public may no longer learn
    # that upd_20 exists, so its cached frame must not be served again
    await put(ctx, {**first, "visibility": "internal"})
    reply = [f for f in await frames(broker, 0, None) if b'"id":"upd_21"' in f]
    assert len(reply) == 1 and b'"reply_to":null' in reply[0] and b"upd_20" not in reply[0]


async def test_a_purge_in_place_is_not_served_from_the_cache(ctx: Services, broker: Broker) -> None:
    await fill(ctx, 8)
    assert any(b"%s 3" % SECRET.encode() in f for f in await frames(broker, 0, None))
    # a purge swaps the document in place, same seq, and calls no hook
    assert await ctx.store.redact([("updates", "upd_3", ["text"])]) >= 1
    replayed = await frames(broker, 0, None)
    assert not any(b"%s 3" % SECRET.encode() in f for f in replayed)
    assert not any(b"%s 3" % SECRET.encode() in f for f in await frames(broker, 0, CONTROL))


async def test_exif_locations_differ_between_control_and_public_frames(ctx: Services, broker: Broker) -> None:
    for i in range(8):
        await put(ctx, update(i, location={"lat": 53.1, "lon": -1.2, "source": "exif"}))
    control = await frames(broker, 0, CONTROL)
    public = await frames(broker, 0, None)
    assert all(b'"lat":53.1' in f for f in control)
    assert public and all(b'"location":null' in f and b"53.1" not in f for f in public)
    assert all(b'"lat":53.1' in f for f in await frames(broker, 0, CONTROL))  # and not the other way round


async def test_one_replay_slice_between_two_turns_of_the_loop() -> None:
    gate = ReplayGate()
    loop = asyncio.get_running_loop()
    ticks = [0]
    running = [True]

    def tick() -> None:  # once per turn of the loop
        ticks[0] += 1
        if running[0]:
            loop.call_soon(tick)

    tick()
    slices: list[tuple[int, int]] = []

    async def replay(n: int) -> None:
        async with Turn(gate) as turn:
            for _ in range(5):
                slices.append((ticks[0], n))
                await turn.pause()

    await asyncio.gather(*[replay(n) for n in range(20)])
    running[0] = False
    turns = [t for t, _ in slices]
    assert len(slices) == 100 and len(set(turns)) == 100  # never two slices in one turn of the loop
    # and in turns: the first, alone for a moment, keeps the turn; then each in the order it came
    assert [n for _, n in slices[:22]] == [0, 0, *range(1, 20), 0]


async def test_a_replay_cancelled_while_waiting_or_holding_hands_the_turn_on() -> None:
    gate = ReplayGate()
    done: list[int] = []

    async def replay(n: int) -> None:
        async with Turn(gate) as turn:
            await turn.pause()
            done.append(n)

    tasks = [asyncio.create_task(replay(n)) for n in range(4)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(done) == [2, 3] and not gate.busy and not gate.waiters


async def test_streams_are_set_up_a_few_per_turn_of_the_loop_in_arrival_order() -> None:
    gate = PerTurn(4)
    loop = asyncio.get_running_loop()
    ticks = [0]
    running = [True]

    def tick() -> None:
        ticks[0] += 1
        if running[0]:
            loop.call_soon(tick)

    tick()
    passed: list[tuple[int, int]] = []

    async def open_stream(n: int) -> None:
        await gate.wait()
        passed.append((ticks[0], n))

    await asyncio.gather(*[open_stream(n) for n in range(30)])
    running[0] = False
    assert [n for _, n in passed] == list(range(30))  # first come, first served
    per_turn: dict[int, int] = {}
    for t, _ in passed:
        per_turn[t] = per_turn.get(t, 0) + 1
    assert max(per_turn.values()) <= 4 and len(per_turn) >= 8
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert gate.used == 0 and not gate.waiters and gate._handle is None  # idle again: nothing scheduled
