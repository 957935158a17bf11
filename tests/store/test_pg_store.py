"""PgStore in one process: two stores on one database stand for two workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.errors import StoreUnavailable, WriteConflict
from fieldcomms.keys import SERVICES
from fieldcomms.services import Services
from fieldcomms.store import Change
from fieldcomms.store.pg import PgStore


@pytest.fixture
async def pair(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[PgStore, PgStore]]:
    stores = (PgStore(pg_url), PgStore(pg_url))
    for store in stores:
        Services(Settings(data_dir=str(tmp_path)), store)  # the unique indexes every worker has
        await store.open()
    yield stores
    for store in stores:
        await store.close()


def upd(i: str, **kw: object) -> dict[str, object]:
    return {"id": i, "event": "ev", "text": f"update {i}", **kw}


async def test_a_stale_version_or_a_taken_id_is_a_conflict(pair: tuple[PgStore, PgStore]) -> None:
    a, b = pair
    first = await a.append("update", "updates", upd("u1"))
    with pytest.raises(WriteConflict):
        await b.append("update", "updates", upd("u1"))  # new, but the id is taken
    assert b.get("updates", "u1") == first  # and b has caught up on the way out
    await b.append("update", "updates", {**first, "text": "edited on b"})
    with pytest.raises(WriteConflict):
        await a.append("update", "updates", {**first, "text": "edited on a, from the old version"})
    current = a.get("updates", "u1")
    assert current is not None and current["text"] == "edited on b"
    assert (await a.append("update", "updates", {**current, "text": "again"}))["text"] == "again"


async def test_every_store_hears_every_change_in_seq_order(pair: tuple[PgStore, PgStore]) -> None:
    a, b = pair
    heard: dict[str, list[int]] = {"a": [], "b": []}
    a.add_listener(lambda c: heard["a"].append(c.seq))
    b.add_listener(lambda c: heard["b"].append(c.seq))
    await asyncio.gather(*[(a, b)[i % 2].append("update", "updates", upd(f"x{i}")) for i in range(60)])
    deadline = time.monotonic() + 5
    while len(heard["a"]) < 60 or len(heard["b"]) < 60:
        assert time.monotonic() < deadline, heard
        await asyncio.sleep(0.01)
    assert heard["a"] == heard["b"] == list(range(heard["a"][0], heard["a"][0] + 60))


async def test_one_callsign_for_two_users_on_two_workers(pair: tuple[PgStore, PgStore]) -> None:
    a, b = pair
    results = await asyncio.gather(
        a.append("user", "users", {"id": "usr_a", "callsign": "Alpha1", "token_hash": "ha"}),
        b.append("user", "users", {"id": "usr_b", "callsign": "ALPHA1", "token_hash": "hb"}),
        return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["WriteConflict", "dict"]
    # Revoked, the callsign is free again.
    winner = next(r for r in results if isinstance(r, dict))
    store = a if winner["id"] == "usr_a" else b
    await store.append("user", "users", {**(store.get("users", winner["id"]) or {}), "revoked": True})
    await b.append("user", "users", {"id": "usr_c", "callsign": "alpha1", "token_hash": "hc"})


async def test_idempotency_answers_are_rows_written_with_their_item(pair: tuple[PgStore, PgStore]) -> None:
    a, b = pair

    def aux(stored: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
        return [("idempotency", {"id": "key1", "body": {"id": stored["id"], "seq": stored["seq"]}})]

    results = await asyncio.gather(a.append("update", "updates", upd("i1"), aux=aux),
                                   b.append("update", "updates", upd("i2"), aux=aux), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["WriteConflict", "dict"]
    winner = next(r for r in results if isinstance(r, dict))
    for store in pair:
        await store.catch_up()
        assert store.get("idempotency", "key1")["body"] == {"id": winner["id"], "seq": winner["seq"]}  # type: ignore[index]
        assert {d["id"] for d in store.all("updates")} == {winner["id"]}


async def test_healthz_says_when_the_view_lags(pg_url: str, tmp_path: Path,
                                               aiohttp_client: Callable[..., Awaitable[TestClient]]) -> None:
    settings = Settings(data_dir=str(tmp_path), database_url=pg_url, max_lag_s=2.0, demo_admin=False)
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["database"] == "ok"
    store = client.app[SERVICES].store
    assert isinstance(store, PgStore)
    # As if a change known committed had not come for 10 s (known: so that the follower's own next poll, which
    # may run before the request, does not find itself caught up and end the lag first).
    store.committed_seq = store.last_seq + 1
    store._behind_since = time.monotonic() - 10
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "unavailable" and body["lag_s"] >= 10
    assert resp.headers["Retry-After"]
    store.committed_seq = store.last_seq  # it never comes: nothing was committed after all
    await store.catch_up()  # the next pull that catches up ends the lag
    deadline = time.monotonic() + 5
    while (resp := await client.get("/healthz")).status != 200:
        assert time.monotonic() < deadline, await resp.text()
        await asyncio.sleep(0.02)


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = PgStore(pg_url)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE fc_schema SET version = 99")
    with pytest.raises(StoreUnavailable, match="newer than this fieldcomms"):
        await PgStore(pg_url).open()


def test_change_is_shared_by_both_backends() -> None:
    assert Change(1, "update", "updates", {}).seq == 1
