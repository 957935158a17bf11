"""Durable storage. Only this package knows that TinyDB is underneath."""

from .store import Change, DataDirLock, Store

__all__ = ["Change", "DataDirLock", "Store"]
