"""The tamper-evident chain over the changes table (DESIGN.md, "Evidence").

One function on purpose: the embedded journal computes the same chain (fieldcomms/store/chain.py on another
branch), and the two must stay byte-for-byte the same so `migrate` can copy hashes and `check` can verify both.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS = bytes(32)  # the "previous hash" of seq 1


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a record's digest is taken over."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev: bytes, record_bytes: bytes) -> bytes:
    """SHA-256(previous hash || SHA-256(canonical record)): a purge may later replace a record by its digest."""
    return hashlib.sha256(prev + hashlib.sha256(record_bytes).digest()).digest()
