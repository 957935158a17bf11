"""The composition root: one typed Services built from the settings, taken by create_app, started and
stopped with the app; domain code that knows nothing of HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES
from fieldcomms.services import Services, build_services


async def test_create_app_takes_the_services_it_is_given(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=str(tmp_path / "d"), fsync=False, demo_admin=False)
    services = build_services(settings)
    app = create_app(settings, services)
    assert app[SERVICES] is services
    assert not services.store.opened
    client: TestClient = await aiohttp_client(app)
    assert services.store.opened  # the app's startup opened the store through Services.start
    response = await client.get("/healthz")
    assert response.status == 200
    assert services.broker.stats()["subscribers"] == 0
    await client.close()
    assert not services.store.opened  # and its cleanup closed it


def test_every_part_is_a_typed_attribute_not_a_string_key(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=str(tmp_path / "d")))
    assert not hasattr(services, "extensions")
    hints = Services.__init__.__annotations__
    # The store is typed by its protocol: the embedded Store and PgStore both satisfy it.
    assert hints["settings"] == "Settings" and hints["store"] == "StoreProtocol"
    for part in ("idempotency", "zones", "positions", "map", "media", "photo_workers", "matcher", "feed_cache",
                 "report_limiter", "auth_limiter", "broker"):
        assert getattr(services, part) is not None, part


def test_domain_code_imports_no_aiohttp() -> None:
    # A fresh interpreter: importing the domain modules must not pull aiohttp in, even indirectly.
    code = ("import sys, fieldcomms.domain.rumours, fieldcomms.domain.updates, fieldcomms.domain.map, "
            "fieldcomms.domain.positions, fieldcomms.domain.zones, fieldcomms.domain.events, "
            "fieldcomms.rumours.matching, fieldcomms.rumours.lifecycle; print('aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_both_stores_satisfy_the_store_protocol(tmp_path: Path) -> None:
    from fieldcomms.store import Store, StoreProtocol, make_store
    from fieldcomms.store.pg import PgStore

    embedded = make_store(Settings(data_dir=str(tmp_path / "d")))
    pg = make_store(Settings(data_dir=str(tmp_path / "d"), database_url="postgresql://postgres@127.0.0.1/x"))
    assert isinstance(embedded, Store) and isinstance(pg, PgStore)
    assert isinstance(embedded, StoreProtocol) and isinstance(pg, StoreProtocol)
