"""Fixtures shared by every test: settings on a temporary data directory, the real app, users of each
role made straight through the store, and a live event.

    async def test_x(client, officer_token, event):
        resp = await client.post(f"/api/v1/events/{event['tag']}/updates", json={...}, headers=auth(officer_token))

`auth`, `make_user` and `EVENT_TAG` are importable: `from tests.conftest import auth, make_user`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fieldcomms import auth as auth_module
from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

EVENT_TAG = "libdempolicing"


def auth(token: str | None) -> dict[str, str]:
    """Headers carrying a bearer token; no token (None) is the public."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def make_user(app: web.Application, role: str, callsign: str, name: str | None = None) -> str:
    """Make a user directly through the store of a running app; returns its token."""
    doc, token = auth_module.make_user(name or f"Test {callsign}", callsign, role)
    await app[SERVICES].store.append("user", "users", doc)
    return token


async def revoke_user(app: web.Application, callsign: str) -> None:
    store = app[SERVICES].store
    user = store.get_by("users", "callsign", callsign.lower())
    assert user is not None, callsign
    await store.append("user", "users", {**user, "revoked": True})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]], app: web.Application) -> TestClient:
    return await aiohttp_client(app)


@pytest.fixture
def user_factory(client: TestClient) -> Callable[[str, str], Awaitable[str]]:
    """`await user_factory(role, callsign) -> token` for extra users in one test."""

    async def factory(role: str, callsign: str) -> str:
        return await make_user(client.app, role, callsign)

    return factory


@pytest.fixture
async def admin_token(client: TestClient) -> str:
    return await make_user(client.app, "admin", "admin1")


@pytest.fixture
async def control_token(client: TestClient) -> str:
    return await make_user(client.app, "control", "control1")


@pytest.fixture
async def officer_token(client: TestClient) -> str:
    return await make_user(client.app, "officer", "officer1")


@pytest.fixture
async def event(client: TestClient, control_token: str) -> dict[str, Any]:
    """A live event #libdempolicing, created through the API."""
    resp = await client.post("/api/v1/events", json={
        "tag": "#LibDemPolicing", "title": "Liberal Democrat conference, Sheffield", "status": "live",
    }, headers=auth(control_token))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body
