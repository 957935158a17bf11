"""The durable store: what was appended is there after a reopen, with or without snapshots; group commit;
listeners after durability; the data-directory lock; paging; TinyDB queries; pruning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from tinydb import Query

from fieldcomms.errors import DataDirLocked, StorageError
from fieldcomms.idempotency import Idempotency
from fieldcomms.store import Change, Store
from fieldcomms.store.journal import RecoveryReport, list_segments, read_segment


async def opened(data_dir: Path, **kw: Any) -> Store:
    store = Store(data_dir, **kw)
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await opened(tmp_path / "data")
    yield s
    await s.close()


def upd(doc_id: str, event: str = "ev", **fields: Any) -> dict[str, Any]:
    return {"id": doc_id, "event": event, "text": f"text of {doc_id}", **fields}


def state(store: Store) -> dict[str, dict[str, Any]]:
    return {name: {d["id"]: d for d in store.all(name)} for name in store.view.tables()}


def journal_seqs(data_dir: Path) -> list[int]:
    out = []
    for _, path in list_segments(data_dir):
        out.extend(r["seq"] for r in read_segment(path, RecoveryReport(), repair=False))
    return out


async def fill(store: Store) -> None:
    await store.append("event", "events", {"id": "ev", "tag": "ev", "title": "Event"})
    for i in range(5):
        await store.append("update", "updates", upd(f"u{i}", n=i))
    await store.append("update", "updates", upd("u1", n=100))  # an edit: u1 moves to the newest seq
    await store.append("user", "users", {"id": "usr1", "callsign": "Alpha1", "token_hash": "h1"})


async def test_append_returns_the_stored_doc_with_its_seq(store: Store) -> None:
    doc = await store.append("update", "updates", upd("a"))
    assert doc == {**upd("a"), "seq": 1}
    assert store.get("updates", "a") == doc
    assert (await store.append("update", "updates", upd("b")))["seq"] == 2
    assert store.last_seq == 2
    assert store.get("updates", "missing") is None
    assert store.count("updates") == 2


async def test_reopen_from_the_journal_gives_the_same_state(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store)
    before, last = state(store), store.last_seq
    await store.close(snapshot=False)
    assert not (tmp_path / "snapshot.jsonl").exists()

    again = await opened(tmp_path)
    try:
        assert state(again) == before
        assert again.last_seq == last == 8
        assert again.get("updates", "u1")["n"] == 100
        assert again.recovery.records == 8 and again.recovery.dropped_bytes == 0
        assert (await again.append("update", "updates", upd("u9")))["seq"] == 9
    finally:
        await again.close(snapshot=False)
    assert journal_seqs(tmp_path) == list(range(1, 10))


async def test_snapshot_then_more_appends_then_reopen(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store)
    segments_before = [p.name for _, p in list_segments(tmp_path)]
    await store.snapshot()
    assert store.snapshot_seq == 8
    for i in range(5, 8):
        await store.append("update", "updates", upd(f"u{i}", n=i))
    await store.append("update", "updates", upd("u0", n=200))
    segments = [p.name for _, p in list_segments(tmp_path)]
    # The journal restarted after the snapshot; the segment it closed is kept as history, compressed.
    assert segments == [segments_before[0] + ".gz", "journal-000000000009.log"]
    assert journal_seqs(tmp_path) == list(range(1, 13))
    before, last = state(store), store.last_seq
    await store.close(snapshot=False)

    again = await opened(tmp_path)
    try:
        assert again.snapshot_seq == 8
        assert state(again) == before
        assert again.last_seq == last == 12
    finally:
        await again.close()


async def test_close_writes_a_snapshot_and_reopen_reads_it(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store)
    before = state(store)
    await store.close()
    assert (tmp_path / "snapshot.jsonl").exists()
    again = await opened(tmp_path)
    try:
        assert again.snapshot_seq == again.last_seq == 8
        assert state(again) == before
        assert (await again.append("update", "updates", upd("new")))["seq"] == 9
    finally:
        await again.close(snapshot=False)
    third = await opened(tmp_path)
    try:
        assert third.last_seq == 9 and third.get("updates", "new") is not None
    finally:
        await third.close()


async def test_a_torn_tail_is_dropped_on_open(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store)
    before = state(store)
    await store.close(snapshot=False)
    (_, segment), = list_segments(tmp_path)
    good = segment.stat().st_size
    segment.write_bytes(segment.read_bytes() + b'0badc0de {"seq": 9, "type": "update", "coll": "upd')  # torn
    again = await opened(tmp_path)
    try:
        assert state(again) == before and again.last_seq == 8
        assert again.recovery.dropped_bytes > 0
        assert segment.stat().st_size == good
        assert (await again.append("update", "updates", upd("after")))["seq"] == 9
    finally:
        await again.close(snapshot=False)
    assert journal_seqs(tmp_path) == list(range(1, 10))


async def test_a_gap_in_the_journal_is_an_error_not_silent_loss(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store)
    await store.close(snapshot=False)
    (_, segment), = list_segments(tmp_path)
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:3] + lines[4:]))
    with pytest.raises(StorageError, match="gap"):
        await opened(tmp_path)
    # The failed open released the lock.
    store = Store(tmp_path)
    with pytest.raises(StorageError):
        await store.open()


async def test_concurrent_appends_share_fsyncs(store: Store) -> None:
    docs = await asyncio.gather(*(store.append("update", "updates", upd(f"c{i}")) for i in range(200)))
    seqs = [d["seq"] for d in docs]
    assert seqs == list(range(1, 201))  # distinct, increasing in the order the appends were made
    assert store.last_seq == 200
    assert 1 <= store.fsync_count < 200
    assert journal_seqs(store.data_dir) == list(range(1, 201))


async def test_listeners_hear_each_change_in_seq_order_once_durable(store: Store) -> None:
    heard: list[Change] = []
    durable_when_heard: list[bool] = []

    def listener(change: Change) -> None:
        heard.append(change)
        durable_when_heard.append(change.seq in journal_seqs(store.data_dir))

    store.add_listener(listener)
    futures = [store.append_nowait("update", "updates", upd(f"l{i}")) for i in range(30)]
    # Applied to the view at once (a later request must see it) but not announced before the disk has it.
    assert store.get("updates", "l29") is not None
    assert heard == []
    await asyncio.gather(*futures)
    assert [c.seq for c in heard] == list(range(1, 31))
    assert all(durable_when_heard)
    assert heard[0] == Change(1, "update", "updates", {**upd("l0"), "seq": 1})
    store.remove_listener(listener)
    await store.append("update", "updates", upd("quiet"))
    assert len(heard) == 30


async def test_a_failing_listener_does_not_lose_the_acknowledgement(store: Store) -> None:
    def broken(change: Change) -> None:
        raise RuntimeError("boom")

    store.add_listener(broken)
    assert (await store.append("update", "updates", upd("x")))["seq"] == 1


async def test_a_failed_disk_write_refuses_this_and_every_later_write(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.append("update", "updates", upd("ok"))
    with mock.patch("os.fdatasync", side_effect=OSError(5, "Input/output error")):
        with pytest.raises(StorageError):
            await store.append("update", "updates", upd("lost"))
    with pytest.raises(StorageError):
        await store.append("update", "updates", upd("later"))
    await store.close()
    again = await opened(tmp_path)
    try:
        assert again.get("updates", "ok") is not None
    finally:
        await again.close()


async def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = await opened(tmp_path)
    try:
        second = Store(tmp_path)
        with pytest.raises(DataDirLocked) as exc:
            await second.open()
        message = str(exc.value)
        assert str(tmp_path) in message and "in use" in message
        assert "pid" in message  # who holds it
    finally:
        await first.close()
    third = await opened(tmp_path)  # released on close
    await third.close()


async def test_paging_and_stale_entries(store: Store) -> None:
    for name in ("a", "b", "c", "d"):
        await store.append("update", "updates", upd(name))  # seqs 1..4
    await store.append("update", "updates", upd("b", edited=True))  # b: 2 -> 5
    await store.append("update", "updates", upd("x", event="other"))  # 6, another event
    await store.append("update", "updates", upd("a", edited=True))  # a: 1 -> 7

    def ids(docs: Any) -> list[str]:
        return [d["id"] for d in docs]

    async def check(s: Store) -> None:
        assert ids(s.newest_first("updates", "ev")) == ["a", "b", "d", "c"]
        assert ids(s.newest_first("updates", "ev", before=7)) == ["b", "d", "c"]
        assert ids(s.newest_first("updates", "ev", before=5)) == ["d", "c"]
        assert ids(s.newest_first("updates", "ev", before=1)) == []
        assert ids(s.oldest_first("updates", "ev")) == ["c", "d", "b", "a"]
        assert ids(s.oldest_first("updates", "ev", since=4)) == ["b", "a"]
        assert ids(s.oldest_first("updates", "ev", since=5)) == ["a"]
        assert ids(s.oldest_first("updates", "ev", since=7)) == []
        assert ids(s.newest_first("updates", "other")) == ["x"]
        assert ids(s.newest_first("updates", "nope")) == []
        assert ids(s.newest_first("nothing", "ev")) == []
        assert [(c, d["id"]) for c, d in s.event_changes_since("ev", 3)] == [
            ("updates", "d"), ("updates", "b"), ("updates", "a")]
        assert s.get("updates", "a")["edited"] is True

    await check(store)
    # The same after a reopen from the journal, and after a reopen from a snapshot.
    data_dir = store.data_dir
    await store.close(snapshot=False)
    again = await opened(data_dir)
    await check(again)
    await again.snapshot()
    await again.close(snapshot=False)
    third = await opened(data_dir)
    try:
        assert third.snapshot_seq == 7
        await check(third)
        await third.append("update", "updates", upd("c", edited=True))
        assert [d["id"] for d in third.newest_first("updates", "ev")] == ["c", "a", "b", "d"]
    finally:
        await third.close()


async def test_stale_entries_are_compacted_and_paging_stays_right(tmp_path: Path) -> None:
    store = await opened(tmp_path, fsync=False)
    try:
        await store.append("update", "updates", upd("steady"))
        for i in range(2100):  # one item edited over and over: its old entries go stale
            store.append_nowait("update", "updates", upd("busy", n=i))
        await store.append("update", "updates", upd("late"))
        log_ = store._logs[("updates", "ev")]
        assert len(log_.seqs) < 2100  # compacted
        assert [d["id"] for d in store.newest_first("updates", "ev")] == ["late", "busy", "steady"]
        assert [d["id"] for d in store.oldest_first("updates", "ev", since=1)] == ["busy", "late"]
        assert store.get("updates", "busy")["n"] == 2099
    finally:
        await store.close()


async def test_tinydb_search_and_unique_indexes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.unique_index("users", "callsign", lambda d: None if d.get("revoked") else d["callsign"].lower())
    await store.open()
    try:
        await store.append("user", "users", {"id": "u1", "callsign": "Alpha", "role": "officer"})
        await store.append("user", "users", {"id": "u2", "callsign": "x", "role": "control"})
        await store.append("user", "users", {"id": "u3", "callsign": "Bravo", "role": "officer"})
        found = store.search("users", Query().callsign == "x")
        assert [d["id"] for d in found] == ["u2"]
        assert sorted(d["id"] for d in store.search("users", Query().role == "officer")) == ["u1", "u3"]
        assert store.search("users", Query().callsign == "nobody") == []
        assert store.get_by("users", "callsign", "alpha")["id"] == "u1"
        await store.append("user", "users", {"id": "u1", "callsign": "Alpha", "role": "officer", "revoked": True})
        assert store.get_by("users", "callsign", "alpha") is None
        assert store.search("users", Query().revoked == True)[0]["id"] == "u1"  # noqa: E712
    finally:
        await store.close()


async def test_expired_idempotency_records_are_pruned_at_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path)
    idem = Idempotency(store, ttl_hours=24)
    store.set_prune(idem.expired)
    await store.open()
    now = time.time()
    await store.append("update", "updates", upd("u1"))
    await store.append("idem", "idempotency", {"id": "old", "fingerprint": "f", "status": 201, "body": {},
                                                "at": now - 25 * 3600})
    await store.append("idem", "idempotency", {"id": "fresh", "fingerprint": "f", "status": 201, "body": {},
                                                "at": now - 23 * 3600})
    assert store.get("idempotency", "old") is not None  # kept until the next snapshot
    await store.snapshot()
    assert store.get("idempotency", "old") is None
    assert store.get("idempotency", "fresh") is not None
    assert store.get("updates", "u1") is not None
    await store.close()
    again = await opened(tmp_path)
    try:
        assert again.get("idempotency", "old") is None
        assert again.get("idempotency", "fresh") is not None
    finally:
        await again.close()


async def test_an_unencodable_doc_changes_nothing(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.append("update", "updates", upd("bad", blob=object()))
    assert store.get("updates", "bad") is None and store.last_seq == 0
    assert (await store.append("update", "updates", upd("good")))["seq"] == 1


async def test_writes_on_a_closed_store_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(StorageError):
        await store.append("update", "updates", upd("early"))
    await store.open()
    await store.close()
    with pytest.raises(StorageError):
        await store.append("update", "updates", upd("late"))


async def test_closing_during_a_snapshot_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A periodic snapshot still rotating the journal when the store closes must neither delete the segment
    holding later changes nor touch the files after the lock is released."""
    for run in range(5):
        data_dir = tmp_path / str(run)
        store = await opened(data_dir, snapshot_every=5)
        first = [store.append_nowait("update", "updates", upd(f"a{i}")) for i in range(5)]  # starts a snapshot
        await asyncio.sleep(0)  # one loop turn: the snapshot task runs up to its rotation
        later = [store.append_nowait("update", "updates", upd(f"b{i}")) for i in range(5)]
        await store.close()
        assert all(f.done() and f.exception() is None for f in first + later)
        again = await opened(data_dir)
        try:
            assert again.last_seq == 10
            assert sorted(d["id"] for d in again.all("updates")) == [f"a{i}" for i in range(5)] + [
                f"b{i}" for i in range(5)]
        finally:
            await again.close()


async def test_no_snapshot_after_the_journal_failed(tmp_path: Path) -> None:
    """The view holds the change whose flush failed; a snapshot must not vouch for it (nor wait forever for a
    rotation the dead writer will never do). Whether the line itself reached the disk is unknowable."""
    store = await opened(tmp_path)
    await store.append("update", "updates", upd("ok"))
    with mock.patch("os.fdatasync", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(StorageError):
            await store.append("update", "updates", upd("lost"))
    with pytest.raises(StorageError):
        await store.snapshot()
    assert not (tmp_path / "snapshot.jsonl").exists()
    await store.close()
    again = await opened(tmp_path)
    try:
        assert again.get("updates", "ok") is not None
        assert again.snapshot_seq == 0
    finally:
        await again.close()


async def test_a_large_store_closes_without_a_snapshot_and_replays_its_journal(tmp_path, monkeypatch):
    """Shutdown must stay quick: above CLOSE_SNAPSHOT_MAX_DOCS the journal tail is kept for the next start."""
    from fieldcomms.store import store as store_module

    monkeypatch.setattr(store_module, "CLOSE_SNAPSHOT_MAX_DOCS", 5)
    store = Store(tmp_path)
    await store.open()
    for i in range(10):
        await store.append("update", "updates", {"id": f"u{i}", "event": "ev", "text": str(i)})
    await store.close()
    assert not (tmp_path / store_module.SNAPSHOT).exists()
    again = Store(tmp_path)
    await again.open()
    assert again.last_seq == 10 and again.get("updates", "u9")["text"] == "9"
    await again.close(snapshot=False)
