"""`fieldcomms migrate`: an embedded deployment (the demo, with a snapshot and a journal tail) copied into an
empty database keeps every document and seq; `check` passes on both sides; a second copy is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_pg_cluster import cli

from fieldcomms.config import Settings
from fieldcomms.services import Services
from fieldcomms.store import Store
from fieldcomms.store.pg import PgStore

pytestmark = pytest.mark.slow


async def test_migrate_copies_every_document_with_its_seq(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("demo", "--data-dir", str(data), cwd=tmp_path).returncode == 0
    # A snapshot, then more changes in the journal after it.
    store = Store(data)
    Services(Settings(data_dir=str(data)), store)
    await store.open()
    await store.snapshot()
    user = store.get_by("users", "callsign", "sgt1") or next(iter(store.all("users")))
    await store.append("user", "users", {**user, "name": "Renamed after the snapshot"})
    await store.close(snapshot=False)
    assert cli("user", "add", "--name", "Tail", "--callsign", "tail1", "--role", "officer", "--data-dir", str(data),
               cwd=tmp_path).returncode == 0

    done = cli("migrate", "--data-dir", str(data), "--database-url", pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    checked = cli("check", "--database-url", pg_url, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.strip().endswith("OK"), checked.stdout
    assert cli("check", "--data-dir", str(data), cwd=tmp_path).returncode == 0

    embedded, pg = Store(data), PgStore(pg_url)
    for s in (embedded, pg):
        Services(Settings(data_dir=str(data)), s)
        await s.open()
    try:
        assert pg.last_seq == embedded.last_seq
        for coll in embedded.view.tables():
            assert {d["id"]: d for d in pg.all(coll)} == {d["id"]: d for d in embedded.all(coll)}, coll
        assert pg.get_by("users", "callsign", "tail1") is not None
        # And the copy takes writes: the next seq follows on.
        user = pg.get_by("users", "callsign", "tail1")
        assert user is not None
        stored = await pg.append("user", "users", {**user, "name": "Written on PostgreSQL"})
        assert stored["seq"] == embedded.last_seq + 1
    finally:
        await pg.close()
        await embedded.close(snapshot=False)

    again = cli("migrate", "--data-dir", str(data), "--database-url", pg_url, cwd=tmp_path)
    assert again.returncode == 1 and "already holds a deployment" in again.stderr
    assert "Traceback" not in again.stderr
