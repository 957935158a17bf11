"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fieldcomms.config import Settings
from fieldcomms.services import Services
from fieldcomms.store.pg import PgStore


@pytest.fixture
async def pair(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    """Two workers' services on one database (two PostgreSQL stores in this process), both open."""
    services = (Services(Settings(data_dir=str(tmp_path)), PgStore(pg_url)),
                Services(Settings(data_dir=str(tmp_path)), PgStore(pg_url)))
    for s in services:
        await s.store.open()
    yield services
    for s in services:
        await s.store.close()
