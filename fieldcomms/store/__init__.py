"""Durable storage. Only this package knows that TinyDB (and PostgreSQL) are underneath."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .memory import Change
from .protocol import StoreProtocol
from .store import DataDirLock, Store

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Change", "DataDirLock", "Store", "StoreProtocol", "make_store"]


def make_store(settings: Settings) -> StoreProtocol:
    """The store the settings ask for: PostgreSQL when `database_url` is set, else the embedded one."""
    if settings.database_url:
        from .pg import PgStore  # psycopg is imported only by deployments that use it

        return PgStore(settings.database_url, max_lag_s=settings.max_lag_s)
    return Store(settings.data_path, fsync=settings.fsync, snapshot_every=settings.snapshot_every)
