"""The tamper-evident chain over the changes table: the same definitions as the embedded journal's
(fieldcomms/store/chain.py), so that `migrate` can carry hashes across and `check` verifies both alike."""

from __future__ import annotations

from ..chain import GENESIS, canonical, link, record_digest

__all__ = ["GENESIS", "canonical", "chain_hash"]


def chain_hash(prev: bytes, record_bytes: bytes) -> bytes:
    """SHA-256(previous hash || SHA-256(canonical record)): a purge may later replace a record by its digest."""
    return link(prev, record_digest(record_bytes))
