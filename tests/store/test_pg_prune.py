"""Expired idempotency answers leave PostgreSQL and the workers' views (two stores on one database stand for
two workers); fresh ones stay and still replay."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import psycopg

from fieldcomms.idempotency import COLL, Slot
from fieldcomms.services import Services
from fieldcomms.store.pg import PgStore
from fieldcomms.store.pg.prune import IDLE_BUCKET_S, prune_idle_buckets

CALLER = "usr_officer"


def record_id(key: str) -> str:
    return hashlib.sha256(f"{CALLER}\x00{key}".encode()).hexdigest()[:40]


async def create(s: Services, text: str, slot: Slot | None) -> tuple[int, dict[str, Any]]:
    doc = {"id": f"upd_{hashlib.sha256(text.encode()).hexdigest()[:8]}_{time.monotonic_ns()}", "event": "ev",
           "text": text}
    stored = await s.store.append("update", "updates", doc,
                                  aux=None if slot is None else slot.aux(lambda d: {"id": d["id"]}))
    return 201, {"id": stored["id"]}


async def old_answer(s: Services, key: str, age_s: float) -> str:
    """An update created with `key` that long ago (its answer written as Idempotency.run writes it)."""
    rid = record_id(key)

    def aux(stored: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return [(COLL, {"id": rid, "fingerprint": "fp", "status": 201, "body": {"id": stored["id"]},
                        "at": time.time() - age_s})]

    stored = await s.store.append("update", "updates", {"id": f"upd_old_{key}", "event": "ev", "text": key}, aux=aux)
    return str(stored["id"])


def rows(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM fc_state WHERE coll = %s", (COLL,)).fetchall()}


async def test_expired_answers_are_pruned_everywhere_and_fresh_ones_still_replay(
        pair: tuple[Services, Services], pg_url: str) -> None:
    a, b = pair
    ttl_s = a.idempotency.ttl_s
    first_old = await old_answer(a, "old-1", ttl_s + 60)
    await old_answer(a, "old-2", ttl_s + 60)
    status, fresh = await a.idempotency.run(CALLER, "fresh", "fp", lambda slot: create(a, "fresh", slot))
    assert status == 201
    await b.store.catch_up()
    assert rows(pg_url) == {record_id("old-1"), record_id("old-2"), record_id("fresh")}

    assert isinstance(a.store, PgStore) and isinstance(b.store, PgStore)
    assert await a.store.prune_expired() == 2
    assert rows(pg_url) == {record_id("fresh")}
    assert a.store.get(COLL, record_id("old-1")) is None and a.store.get(COLL, record_id("fresh")) is not None

    # b has not pruned yet: its view still holds an expired answer whose row is gone. Expired means absent on
    # both sides, so the key makes a new item there (neither a conflict nor the old answer replayed).
    assert b.store.get(COLL, record_id("old-1")) is not None
    status, again = await b.idempotency.run(CALLER, "old-1", "fp", lambda slot: create(b, "old-1 again", slot))
    assert status == 201 and again["id"] != first_old
    # And the same the other way round: an expired row a worker's view no longer holds can be taken.
    assert await b.store.prune_expired() == 0  # a deleted old-2 already; b drops it from its view
    assert b.store.get(COLL, record_id("old-2")) is None

    # The fresh answer stays and replays on either worker, without a new item.
    await a.store.catch_up()  # b's new item included
    updates = a.store.count("updates")
    for s in (a, b):
        assert await s.idempotency.run(CALLER, "fresh", "fp", lambda slot, s=s: create(s, "dup", slot)) == (201, fresh)
    await a.store.catch_up()
    assert a.store.count("updates") == updates
    assert rows(pg_url) == {record_id("fresh"), record_id("old-1")}


async def test_an_expired_row_a_view_no_longer_holds_can_be_taken(pair: tuple[Services, Services],
                                                                  pg_url: str) -> None:
    a, b = pair
    await old_answer(a, "old", a.idempotency.ttl_s + 60)
    await b.store.catch_up()
    # b's view has dropped the expired answer (as after its prune) while the row is still in the table.
    assert isinstance(b.store, PgStore)
    b.store.drop_expired(b.idempotency.expired, [(COLL, record_id("old"))])
    assert b.store.get(COLL, record_id("old")) is None and record_id("old") in rows(pg_url)
    status, body = await b.idempotency.run(CALLER, "old", "fp", lambda slot: create(b, "old again", slot))
    assert status == 201 and body["id"] != "upd_old_old"
    stored = b.store.get(COLL, record_id("old"))
    assert stored is not None and stored["body"] == body


async def test_idle_rate_buckets_are_deleted_and_busy_ones_kept(pair: tuple[Services, Services],
                                                                pg_url: str) -> None:
    a, _ = pair
    assert isinstance(a.store, PgStore)
    assert await a.store.take_token("auth:192.0.2.1", 1.0, 5) == 0.0
    assert await a.store.take_token("auth:192.0.2.2", 1.0, 5) == 0.0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE fc_rate SET at = at - %s WHERE key = 'auth:192.0.2.1'", (IDLE_BUCKET_S + 60,))
    assert await prune_idle_buckets(a.store) == 1
    with psycopg.connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM fc_rate").fetchall()] == ["auth:192.0.2.2"]
