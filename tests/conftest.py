"""Fixtures shared by every test: settings on a temporary data directory, the real app, users of each
role made straight through the store, and a live event.

    async def test_x(client, officer_token, event):
        resp = await client.post(f"/api/v1/events/{event['tag']}/updates", json={...}, headers=auth(officer_token))

`auth`, `make_user` and `EVENT_TAG` are importable: `from tests.conftest import auth, make_user`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
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


# The API test modules that run against both backends (the rest run on the embedded store only: they test
# the journal, or reach into it). Every test here builds its app through the `settings` fixture.
BOTH_BACKENDS = {"test_updates", "test_rumours", "test_alerts", "test_users", "test_events", "test_idempotency",
                 "test_map", "test_auth_matrix", "test_feeds_routes",
                 "test_positions", "test_zones", "test_stream", "test_photos", "test_reports",
                 "test_export", "test_retention", "test_originals_audit", "test_decisions", "test_public_rumour_board"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        both = metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_BACKENDS
        metafunc.parametrize("backend", ["embedded", "pg"] if both else ["embedded"], scope="function")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One database on the shared server for the whole run, dropped after."""
    import pgdb

    why = pgdb.server_reachable()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required: {why}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {why}")
    name = pgdb.create_database()
    yield f"{pgdb.SERVER}/{name}"
    pgdb.drop_database(name)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The run's database, emptied: each test starts on a fresh schema."""
    import pgdb

    pgdb.empty_database(pg_database)
    return pg_database


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    database_url = request.getfixturevalue("pg_url") if backend == "pg" else ""
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False, database_url=database_url)


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
