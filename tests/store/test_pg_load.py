"""A worker joining late loads the same view (documents, seq logs, unique keys, every index built by a hook) as
the worker that wrote it, whatever the page size of the load; a failure while loading stops the fetching thread
and reaches the caller."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fieldcomms.config import Settings
from fieldcomms.services import Services
from fieldcomms.store.pg import PgStore
from fieldcomms.store.pg import load as pg_load
from fieldcomms.store.pg.load import load_state


def upd(i: int, **kw: object) -> dict[str, object]:
    return {"id": f"u{i}", "event": "ev" if i % 3 else "other", "text": f"update {i}",
            "visibility": "public" if i % 2 else "internal", "kind": "alert" if i % 5 == 0 else "info", **kw}


async def fill(s: Services) -> None:
    store = s.store
    for i in range(40):
        await store.append("update", "updates", upd(i))
    for i in range(0, 40, 4):  # edited: replaced versions, stale entries in the seq logs
        await store.append("update", "updates", {**(store.get("updates", f"u{i}") or {}), "text": "edited"})
    for i in range(5):
        await store.append("user", "users", {"id": f"usr{i}", "callsign": f"C{i}", "token_hash": f"h{i}",
                                             "revoked": False})
    await store.append("user", "users", {**(store.get("users", "usr2") or {}), "revoked": True})


def snapshot(s: Services) -> dict[str, Any]:
    store = s.store
    return {
        "docs": {c: sorted(map(repr, store.all(c))) for c in ("updates", "users")},
        "logs": {ev: [d["id"] for d in store.newest_first("updates", ev)] for ev in ("ev", "other")},
        "since": [(c, d["id"]) for c, d in store.event_changes_since("ev", 10)],
        "callsigns": {f"c{i}": (store.get_by("users", "callsign", f"c{i}") or {}).get("id") for i in range(5)},
        "public": {k: [d["id"] for d in s.public_updates.newest_first("ev", k)] for k in (None, "alert", "info")},
        "seq": store.last_seq,
        "head": store.chain_head(),
    }


@pytest.mark.parametrize("page", [7, None])
async def test_a_joining_worker_loads_the_view_the_writer_has(pg_url: str, tmp_path: Path, page: int | None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if page is not None:
        monkeypatch.setattr(pg_load, "PAGE", page)  # many pages, so the fetching thread runs ahead
    writer = Services(Settings(data_dir=str(tmp_path)), PgStore(pg_url))
    await writer.store.open()
    try:
        await fill(writer)
        joiner = Services(Settings(data_dir=str(tmp_path)), PgStore(pg_url))
        await joiner.store.open()
        try:
            expected, got = snapshot(writer), snapshot(joiner)
            assert got == expected
            assert got["callsigns"]["c2"] is None and len(got["docs"]["updates"]) == 40
        finally:
            await joiner.store.close()
    finally:
        await writer.store.close()


async def test_a_failure_while_loading_stops_the_fetcher_and_is_raised(pg_url: str, tmp_path: Path) -> None:
    writer = PgStore(pg_url)
    Services(Settings(data_dir=str(tmp_path)), writer)
    await writer.open()
    try:
        for i in range(30):
            await writer.append("update", "updates", upd(i))
    finally:
        await writer.close()
    pages: list[int] = []

    def apply(entries: list[tuple[str, dict[str, Any]]]) -> None:
        pages.append(len(entries))
        if len(pages) == 2:
            raise RuntimeError("applying failed")

    with pytest.raises(RuntimeError, match="applying failed"):
        load_state(pg_url, apply, connect_timeout=3, page=5)
    assert pages == [5, 5]
    assert not [t for t in threading.enumerate() if t.name == "fc-load-fetch"]
