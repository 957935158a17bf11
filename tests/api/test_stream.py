"""The live stream over real HTTP, read with a spec-following SSE client (tests/sse.py): who receives what,
retractions, resuming exactly once (from the ring and from the store), resets, slow readers, keep-alives,
and shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from conftest import auth, make_user
from sse import Event, SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

TAG = "libdempolicing"
STREAM = f"/api/v1/events/{TAG}/stream"
UPDATES = f"/api/v1/events/{TAG}/updates"
BARKERS_POOL = {"lat": 53.3800, "lon": -1.4710}
ROOT = Path(__file__).resolve().parents[2]

Json = dict[str, Any]


@dataclass
class World:
    client: TestClient
    officer: str
    officer2: str
    control: str

    async def post(self, text: str, token: str | None = None, **body: Any) -> Json:
        resp = await self.client.post(UPDATES, json={"text": text, **body}, headers=auth(token or self.officer))
        assert resp.status == 201, await resp.text()
        out: Json = await resp.json()
        return out

    async def subscribe(self, token: str | None = None, last_id: str | None = None) -> tuple[ClientResponse, SSEReader]:
        headers = auth(token) if last_id is None else {**auth(token), "Last-Event-ID": last_id}
        resp = await self.client.get(STREAM, headers=headers)
        assert resp.status == 200, await resp.text()
        return resp, SSEReader(resp.content)

    @property
    def broker(self) -> Any:
        return self.client.app[SERVICES].broker


Make = Callable[..., Awaitable[World]]


@pytest.fixture
def make_world(aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> Make:
    async def make(**overrides: Any) -> World:
        settings = Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False, **overrides)
        client = await aiohttp_client(create_app(settings))
        app = client.app
        world = World(client, await make_user(app, "officer", "officer1"), await make_user(app, "officer", "officer2"),
                      await make_user(app, "control", "control1"))
        resp = await client.post("/api/v1/events", json={"tag": TAG, "title": "Lib Dem conference", "status": "live"},
                                 headers=auth(world.control))
        assert resp.status == 201
        return world

    return make


@pytest.fixture
async def world(make_world: Make) -> World:
    return await make_world()


async def until(reader: SSEReader, event_type: str, text: str | None = None) -> list[Event]:
    """Every event up to and including the first of `event_type` (whose data mentions `text`)."""
    seen = []
    while True:
        event = await reader.next(5.0)
        assert event is not None, f"the stream ended before {event_type} {text}"
        seen.append(event)
        if event.type == event_type and (text is None or text in event.data):
            return seen


# ---- the shape of the stream -----------------------------------------------------------------------------


async def test_headers_retry_and_frames(world: World) -> None:
    resp, reader = await world.subscribe()
    assert resp.content_type == "text/event-stream"
    assert resp.headers["Cache-Control"].startswith("no-cache")
    first = await resp.content.readuntil(b"\n\n")
    assert first == b"retry: 3000\n\n"
    update = await world.post("hello Sheffield", visibility="public")
    event = await reader.next()
    assert event is not None
    assert (event.type, event.id) == ("update", str(update["seq"]))
    assert event.json() == update
    resp.close()


async def test_unknown_event_is_404(world: World) -> None:
    resp = await world.client.get("/api/v1/events/nosuchevent/stream")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_bad_since_is_422(world: World) -> None:
    resp = await world.client.get(STREAM + "?since=yesterday")
    assert resp.status == 422


# ---- who receives what -------------------------------------------------------------------------------------


async def test_public_never_receives_internal_updates_positions_or_alerts(world: World) -> None:
    public_resp, public = await world.subscribe()
    control_resp, control = await world.subscribe(world.control)
    officer_resp, officer = await world.subscribe(world.officer2)
    await world.post("internal: kettle forming on Division Street")
    pos = await world.client.post(f"/api/v1/events/{TAG}/positions", json=BARKERS_POOL, headers=auth(world.officer))
    assert pos.status == 204
    alert = await world.client.post(f"/api/v1/events/{TAG}/alerts", headers=auth(world.control), json={
        "text": "Disorder at Barkers Pool", "location": BARKERS_POOL, "radius_m": 200})
    assert alert.status == 201
    assert [r["callsign"] for r in (await alert.json())["recipients"]] == ["officer1"]
    await world.post("public: the march has set off", visibility="public")  # the sentinel

    got_public = await until(public, "update", "the march has set off")
    assert [e.type for e in got_public] == ["update"]
    assert "internal" not in "".join(e.data for e in got_public)

    got_control = await until(control, "update", "the march has set off")
    assert [e.type for e in got_control] == ["update", "position", "alert", "update"]
    position = got_control[1].json()
    assert position["officer"]["callsign"] == "officer1" and position["stale"] is False
    assert got_control[2].json()["acks"] == []

    got_officer = await until(officer, "update", "the march has set off")  # officer2: not a recipient
    assert [e.type for e in got_officer] == ["update", "update"]
    for resp in (public_resp, control_resp, officer_resp):
        resp.close()


async def test_alert_reaches_its_recipient_without_acks_and_acks_reach_control(world: World) -> None:
    await world.client.post(f"/api/v1/events/{TAG}/positions", json=BARKERS_POOL, headers=auth(world.officer))
    officer_resp, officer = await world.subscribe(world.officer)
    control_resp, control = await world.subscribe(world.control)
    resp = await world.client.post(f"/api/v1/events/{TAG}/alerts", headers=auth(world.control), json={
        "text": "Crush risk at the fountain", "location": BARKERS_POOL, "radius_m": 100})
    alert = await resp.json()
    received = (await until(officer, "alert"))[-1].json()
    assert received["id"] == alert["id"] and "acks" not in received
    assert (await world.client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth(world.officer))).status == 204
    acked = [e.json() for e in await until(control, "alert") + await until(control, "alert")][-1]
    assert [a["callsign"] for a in acked["acks"]] == ["officer1"]
    officer_resp.close()
    control_resp.close()


async def test_retraction_reaches_the_public_as_a_tombstone(world: World) -> None:
    resp, public = await world.subscribe()
    update = await world.post("Road closed on Fargate", visibility="public")
    await until(public, "update")
    assert (await world.client.delete(f"/api/v1/updates/{update['id']}", headers=auth(world.control))).status == 200
    event = (await until(public, "update-retracted"))[-1]
    assert event.json() == {"id": update["id"], "event": TAG, "seq": int(event.id), "status": "retracted"}
    resp.close()


async def test_retraction_of_an_internal_update_tells_the_public_nothing(world: World) -> None:
    resp, public = await world.subscribe()
    update = await world.post("internal: van 3 to Fargate")
    await world.client.delete(f"/api/v1/updates/{update['id']}", headers=auth(world.control))
    await world.post("sentinel", visibility="public")
    assert [e.type for e in await until(public, "update", "sentinel")] == ["update"]
    resp.close()


async def test_zones_and_their_deletion_on_the_stream(world: World) -> None:
    resp, public = await world.subscribe()
    props: Json = {"name": "Rendezvous", "kind": "rendezvous", "buffer_m": 30}
    zone: Json = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.4710, 53.3800]},
                  "properties": props}
    internal = await (await world.client.post(f"/api/v1/events/{TAG}/zones", json=zone,
                                              headers=auth(world.control))).json()
    zone["properties"] = {**props, "name": "Meeting point", "visibility": "public"}
    public_zone = await (await world.client.post(f"/api/v1/events/{TAG}/zones", json=zone,
                                                 headers=auth(world.control))).json()
    for z in (internal, public_zone):
        assert (await world.client.delete(f"/api/v1/zones/{z['id']}", headers=auth(world.control))).status == 204
    got = await until(public, "zone-deleted")
    assert [e.type for e in got] == ["zone", "zone-deleted"]
    assert got[0].json() == public_zone
    assert got[1].json()["id"] == public_zone["id"] and got[1].json()["deleted"] is True
    resp.close()


# ---- resuming ----------------------------------------------------------------------------------------------


async def _resume_exactly_once(world: World) -> None:
    resp, reader = await world.subscribe()
    first = [await world.post(f"before {i}", visibility="public") for i in range(3)]
    got = await reader.collect(3)
    assert [e.json()["id"] for e in got] == [u["id"] for u in first]
    last_id = got[-1].id
    resp.close()
    missed = []
    for i in range(6):
        missed.append(await world.post(f"missed {i}", visibility="public"))
        await world.post(f"internal {i}")  # not for the public: skipped, never counted
    resp, reader = await world.subscribe(last_id=last_id)
    live = [await world.post(f"after {i}", visibility="public") for i in range(2)]
    got = await reader.collect(8)
    assert [e.json()["text"] for e in got] == [u["text"] for u in missed + live]
    assert [int(e.id) for e in got] == sorted({int(e.id) for e in got})  # in order, no duplicate
    with pytest.raises(TimeoutError):
        await reader.next(within=0.3)  # and nothing more
    resp.close()


async def test_resume_after_a_gap_from_the_ring(world: World) -> None:
    await _resume_exactly_once(world)


async def test_resume_after_a_gap_from_the_store_when_the_ring_is_too_small(make_world: Make) -> None:
    await _resume_exactly_once(await make_world(sse_ring_size=2))


async def test_since_parameter_resumes_like_the_header(world: World) -> None:
    a = await world.post("one", visibility="public")
    b = await world.post("two", visibility="public")
    resp, reader = await world.subscribe()
    resp.close()
    resp = await world.client.get(STREAM + f"?since={a['seq']}")
    got = await SSEReader(resp.content).next()
    assert got is not None and got.json()["id"] == b["id"]
    resp.close()


async def test_replay_from_the_store_carries_the_newest_state_once(make_world: Make) -> None:
    world = await make_world(sse_ring_size=1)
    before = (await world.post("anchor", visibility="public"))["seq"]
    update = await world.post("Fargate closed", visibility="public")
    await world.client.post(f"/api/v1/updates/{update['id']}/amplify", headers=auth(world.officer2))
    await world.post("filler", visibility="public")
    resp, reader = await world.subscribe(last_id=str(before))
    got = await reader.collect(2)
    assert [e.json()["text"] for e in got] == ["Fargate closed", "filler"]
    assert [a["callsign"] for a in got[0].json()["amplified_by"]] == ["officer2"]
    resp.close()


async def test_a_resume_from_the_future_gets_reset_then_live_events(world: World) -> None:
    await world.post("one", visibility="public")
    resp, reader = await world.subscribe(last_id="999999")
    reset = await reader.next()
    assert reset is not None and reset.type == "reset"
    assert int(reset.id) == reset.json()["last_seq"] == world.broker.published_seq
    update = await world.post("after the reset", visibility="public")
    event = await reader.next()
    assert event is not None and event.json()["id"] == update["id"]
    resp.close()


async def test_an_unreadable_last_event_id_gets_reset(world: World) -> None:
    resp, reader = await world.subscribe(last_id="abc")
    event = await reader.next()
    assert event is not None and event.type == "reset"
    resp.close()


async def test_resume_from_a_list_last_seq_skips_what_the_list_had(world: World) -> None:
    await world.post("listed", visibility="public")
    listed = await (await world.client.get(UPDATES)).json()
    resp, reader = await world.subscribe(last_id=str(listed["last_seq"]))
    update = await world.post("new", visibility="public")
    event = await reader.next()
    assert event is not None and event.json()["id"] == update["id"]
    resp.close()


# ---- slow readers, keep-alives, shutdown ---------------------------------------------------------------


async def test_a_reader_that_never_reads_does_not_delay_another(make_world: Make) -> None:
    world = await make_world(sse_buffer_bytes=16 * 1024)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((world.client.server.host, world.client.server.port))
    sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: test\r\n\r\n".encode())  # and never reads
    resp, reader = await world.subscribe()
    for _ in range(100):
        if world.broker.stats()["subscribers"] == 2:
            break
        await asyncio.sleep(0.01)
    assert world.broker.stats()["subscribers"] == 2

    count, text = 150, "x" * 1900
    lags = []

    async def read_all() -> None:
        for _ in range(count):
            event = await reader.next(within=10)
            assert event is not None
            lags.append(time.monotonic() - posted[int(event.json()["text"].split()[0])])

    posted: dict[int, float] = {}
    task = asyncio.create_task(read_all())
    for i in range(count):
        posted[i] = time.monotonic()
        await world.post(f"{i} {text}", visibility="public")
    await asyncio.wait_for(task, 20)
    assert len(lags) == count
    assert max(lags) < 2.0, f"the reading subscriber waited {max(lags):.2f}s"  # generous; the bench is precise
    assert world.broker.stats()["dropped"] == 1
    assert world.broker.stats()["subscribers"] == 1
    sock.close()
    resp.close()


async def test_keep_alive_comments_arrive(make_world: Make) -> None:
    world = await make_world(sse_keepalive_s=0.2)
    resp, reader = await world.subscribe()
    with pytest.raises(TimeoutError):
        await reader.next(within=0.7)
    assert reader.comments.count("keep-alive") >= 2
    resp.close()


async def test_shutdown_ends_open_streams_at_once(make_world: Make) -> None:
    world = await make_world()
    streams = [await world.subscribe(token) for token in (None, world.officer, world.control)]
    started = time.monotonic()
    await world.client.server.close()
    assert time.monotonic() - started < 2.0
    for _resp, reader in streams:
        assert await reader.next(within=2) is None  # the stream ended cleanly


@pytest.mark.slow
def test_fieldcomms_serve_stops_at_once_with_streams_open(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FIELDCOMMS_DEMO_ADMIN": "false", "FIELDCOMMS_FSYNC": "false"}
    data = tmp_path / "data"
    token = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--data-dir", str(data), "--name",
                            "c", "--callsign", "c1", "--role", "control"], capture_output=True, text=True,
                           check=True, cwd=ROOT, env=env).stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data), "--port",
                             str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    streams = []
    try:
        _wait_listening(port, proc)
        bearer = f"Authorization: Bearer {token}\r\n"
        body = b'{"tag": "libdempolicing", "title": "t", "status": "live"}'
        head = _request(port, f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\nConnection: close\r\n{bearer}\r\n".encode() + body,
                        b"\r\n\r\n")
        assert b" 201 " in head.split(b"\r\n")[0], head
        for auth_header in ("", bearer, bearer):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: x\r\n{auth_header}\r\n".encode())
            assert b" 200 " in _read_until(sock, b"retry: 3000")
            streams.append(sock)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert time.monotonic() - started < 3.0
        assert proc.returncode == 0
        for sock in streams:
            assert _read_until(sock, b"0\r\n\r\n")  # each stream was ended properly: the last chunk
    finally:
        for sock in streams:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def _request(port: int, raw: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return _read_until(sock, until)


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got


async def test_head_answers_without_a_stream(world: World) -> None:
    resp = await world.client.head(STREAM)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    assert world.broker.stats()["subscribers"] == 0


async def test_a_replay_never_shows_again_what_was_taken_down(world: World) -> None:
    resp, live = await world.subscribe()  # so the update's public frame is made and kept in the ring
    update = await world.post("Fargate closed: SECRET-AFTER-RETRACTION", visibility="public")
    await until(live, "update")
    await world.client.delete(f"/api/v1/updates/{update['id']}", headers=auth(world.officer))
    await until(live, "update-retracted")
    resp.close()
    for headers in ({"Last-Event-ID": "0"}, {"Last-Event-ID": str(update["seq"] - 1)}):
        resp = await world.client.get(STREAM, headers=headers)
        got = await SSEReader(resp.content).next()
        assert got is not None and got.type == "update-retracted" and got.json()["id"] == update["id"]
        assert "SECRET" not in got.data
        resp.close()
    # Its author may still read it, so gets both changes, in order.
    resp, own = await world.subscribe(world.officer, last_id="0")
    both = await own.collect(2)
    assert [(e.type, e.json()["status"]) for e in both] == [("update", "active"), ("update-retracted", "retracted")]
    resp.close()
