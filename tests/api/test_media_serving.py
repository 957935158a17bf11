"""Serving photos to slow readers (issue 15, item 8): files go out from disk a piece at a time, a reader that
takes nothing for `media_send_timeout_s` is cut off, and one address holds at most `media_connections_per_address`
downloads at once. Caching as the changed contract says: public photos `public, max-age=300`, others no-store."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

from aiohttp import FormData
from PIL import Image

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user

TAG = "libdempolicing"


def _big_jpeg() -> bytes:
    """Noise: about 8 MB as a JPEG even after re-encoding, more than loopback's socket buffers hold."""
    buf = io.BytesIO()
    Image.effect_noise((3000, 2400), 90).convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


async def _raw_get(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A GET that reads the status line and then nothing more: a client on a stalled link (a small receive
    buffer, so the kernel does not take the whole photo on its behalf)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    return reader, writer, status


async def _drain(reader: asyncio.StreamReader) -> int:
    """Read until the server ends the connection; the bytes received."""
    got = 0
    try:
        while chunk := await reader.read(1 << 20):
            got += len(chunk)
    except ConnectionResetError:
        pass
    return got


async def test_slow_readers_of_photos_are_bounded(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False,
                              media_connections_per_address=2, media_send_timeout_s=1.0))
    client = await aiohttp_client(app)
    control = await make_user(app, "control", "c1")
    officer = await make_user(app, "officer", "o1")
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(control))).status == 201
    form = FormData()
    form.add_field("file", await asyncio.to_thread(_big_jpeg), filename="crowd.jpg", content_type="image/jpeg")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(officer))
    assert resp.status == 201, await resp.text()
    photo = await resp.json()
    resp = await client.post(f"/api/v1/events/{TAG}/updates", headers=auth(officer),
                             json={"text": "the crowd", "visibility": "public", "photos": [photo["id"]]})
    assert resp.status == 201
    resp = await client.get(photo["url"])
    size = len(await resp.read())
    assert size > 2_000_000
    port = client.port
    assert port is not None
    stalled = [await _raw_get(port, photo["url"]) for _ in range(2)]
    assert all(status.startswith(b"HTTP/1.1 200") for _, _, status in stalled)
    _, writer3, status = await _raw_get(port, photo["url"])
    assert status.startswith(b"HTTP/1.1 429"), status
    writer3.close()
    # The stalled downloads are cut off after the send timeout, short of the whole photo, freeing their places.
    resp = await client.get(photo["url"])
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    await asyncio.sleep(2.5)
    for reader, writer, _ in stalled:
        async with asyncio.timeout(10):
            assert await _drain(reader) < size
        writer.close()
    resp = await client.get(photo["url"])
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300" and resp.headers["ETag"]
    assert len(await resp.read()) == size
