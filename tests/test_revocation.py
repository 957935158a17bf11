"""Revoking a user, or changing their role, ends what they have open (issue 15, item 1): their streams close at
once and a request begun before the change (an upload still arriving) is refused instead of posting after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sse import SSEReader

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES
from tests.conftest import auth, make_user

TAG = "libdempolicing"
PHOTO = Path("/work/shared/samples/photos/jolla.jpg")
PHOTO_BYTES = PHOTO.read_bytes()


@pytest.fixture
async def world(aiohttp_client, tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, fsync=False))
    client = await aiohttp_client(app)
    tokens = {"admin": await make_user(app, "admin", "a1"), "control": await make_user(app, "control", "c1"),
              "officer": await make_user(app, "officer", "o1"), "other": await make_user(app, "officer", "o2")}
    assert (await client.post("/api/v1/events", json={"tag": TAG, "title": "t", "status": "live"},
                              headers=auth(tokens["control"]))).status == 201
    return client, tokens


async def _ends(reader: SSEReader, within: float = 3.0) -> bool:
    """True when the stream ends within `within` seconds (keep-alives and events are skipped)."""
    try:
        async with asyncio.timeout(within):
            while (await reader.next(within)) is not None:
                pass
        return True
    except TimeoutError:
        return False


async def test_revoking_closes_the_users_streams_at_once(world: tuple[TestClient, dict[str, str]]) -> None:
    client, t = world
    revoked = await client.get(f"/api/v1/events/{TAG}/stream", headers=auth(t["officer"]))
    kept = await client.get(f"/api/v1/events/{TAG}/stream", headers=auth(t["other"]))
    assert revoked.status == kept.status == 200
    resp = await client.delete("/api/v1/users/o1", headers=auth(t["admin"]))
    assert resp.status == 204
    assert await _ends(SSEReader(revoked.content))
    # Others are untouched and still receive what is posted.
    reader = SSEReader(kept.content)
    await client.post(f"/api/v1/events/{TAG}/updates", json={"text": "still here"}, headers=auth(t["other"]))
    event = await reader.next()
    assert event is not None and event.type == "update"
    kept.close()
    revoked.close()


async def test_a_role_change_closes_the_streams_opened_with_the_old_role(
        world: tuple[TestClient, dict[str, str]]) -> None:
    client, t = world
    resp = await client.get(f"/api/v1/events/{TAG}/stream", headers=auth(t["control"]))
    store = client.app[SERVICES].store
    user = store.get_by("users", "callsign", "c1")
    await store.append("user", "users", {**user, "role": "officer"})  # as another worker or the CLI would
    assert await _ends(SSEReader(resp.content))
    resp.close()


async def test_an_upload_begun_before_the_revocation_does_not_post_after_it(
        world: tuple[TestClient, dict[str, str]]) -> None:
    client, t = world
    boundary = "fieldcommsboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    data = PHOTO_BYTES
    tail = f"\r\n--{boundary}--\r\n".encode()
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield head + data[: len(data) // 2]
        half.set()
        await go_on.wait()
        yield data[len(data) // 2:] + tail

    headers: dict[str, Any] = {**auth(t["officer"]), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    upload = asyncio.create_task(client.post("/api/v1/photos", data=body(), headers=headers))
    await half.wait()
    await asyncio.sleep(0.2)  # the server is reading the body
    assert (await client.delete("/api/v1/users/o1", headers=auth(t["admin"]))).status == 204
    go_on.set()
    resp = await upload
    assert resp.status == 401, await resp.text()
    assert client.app[SERVICES].store.count("photos") == 0


async def test_a_json_post_begun_before_the_revocation_does_not_post_after_it(
        world: tuple[TestClient, dict[str, str]]) -> None:
    client, t = world
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"text": "posted after my'
        half.set()
        await go_on.wait()
        yield b' revocation"}'

    headers = {**auth(t["officer"]), "Content-Type": "application/json"}
    post = asyncio.create_task(client.post(f"/api/v1/events/{TAG}/updates", data=body(), headers=headers))
    await half.wait()
    await asyncio.sleep(0.2)
    assert (await client.delete("/api/v1/users/o1", headers=auth(t["admin"]))).status == 204
    go_on.set()
    resp = await post
    assert resp.status == 401, await resp.text()
    assert client.app[SERVICES].store.count("updates") == 0
