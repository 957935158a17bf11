"""Stream bounds (issue 15, item 3): open streams per user and per public address are capped, and a replay is
written in slices without changing what a client receives."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from pathlib import Path

import pytest
from sse import SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user

TAG = "libdempolicing"
STREAM = f"/api/v1/events/{TAG}/stream"


async def test_streams_are_capped_per_user_and_per_public_address(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False,
                              sse_streams_per_user=2, sse_streams_per_address=3))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    mine = [await client.get(STREAM, headers=auth(officer)) for _ in range(2)]
    assert [r.status for r in mine] == [200, 200]
    refused = await client.get(STREAM, headers=auth(officer))
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    # Another user is not affected; the public has its own count per address.
    other = await client.get(STREAM, headers=auth(control))
    assert other.status == 200
    public = [await client.get(STREAM) for _ in range(3)]
    assert [r.status for r in public] == [200, 200, 200]
    assert (await client.get(STREAM)).status == 429
    # A closed stream frees its place.
    mine[0].close()
    for _ in range(50):
        again = await client.get(STREAM, headers=auth(officer))
        if again.status == 200:
            break
        again.close()
        await asyncio.sleep(0.05)
    assert again.status == 200
    for resp in [*mine, other, *public, again]:
        resp.close()


async def test_the_cap_holds_for_many_streams_opened_at_once(aiohttp_client, tmp_path: Path) -> None:
    """Streams are set up a few per turn of the loop (live_replay.PerTurn): the ones waiting for their turn are
    counted when it comes, so 40 opened together from one address still get 5 streams and 35 refusals."""
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False,
                              sse_streams_per_address=5))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    # All connected first, then all asked at once: the server reads the 40 requests in one turn of its loop.
    conns = [await asyncio.open_connection(client.host, client.port) for _ in range(40)]
    for _, writer in conns:
        writer.write(f"GET {STREAM} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    statuses = [int((await reader.readline()).split()[1]) for reader, _ in conns]
    assert sorted(statuses) == [200] * 5 + [429] * 35
    for _, writer in conns:
        writer.close()


async def test_a_long_replay_arrives_whole_and_in_order(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    seqs = []
    for i in range(600):  # several replay pieces of 64 KiB
        resp = await client.post(f"/api/v1/events/{TAG}/updates", headers=auth(officer),
                                 json={"text": f"update {i} " + "x" * 300, "visibility": "public"})
        seqs.append((await resp.json())["seq"])
    resp = await client.get(STREAM, headers={"Last-Event-ID": "0"})
    events = await SSEReader(resp.content).collect(600, within=10)
    assert [int(e.id) for e in events] == seqs
    resp.close()


async def test_clients_that_leave_before_their_stream_begins_log_nothing(
        aiohttp_client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reconnect storm leaves hundreds of connections closed before their answer: each used to log a
    traceback (a log flood; with stderr a full pipe, the server stopped)."""
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    request = f"GET {STREAM}?since=0 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    for _ in range(30):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port or 0))
        await asyncio.get_running_loop().sock_sendall(sock, request)
        sock.close()
    await asyncio.sleep(0.5)
    assert (await client.get("/healthz")).status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors][:3]
