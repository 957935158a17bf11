"""The tamper-evident chain over every stored change (API.md "The tamper-evident chain", DESIGN.md "Evidence").

Definitions, shared by every backend (the embedded journal and PostgreSQL compute the same values):

- A change's **record** is the dict ``{"seq": int, "type": str, "coll": str, "data": {...}}`` plus
  ``"aux": [[coll, doc], ...]`` when the change wrote auxiliary documents atomically with it (an idempotency
  answer, for instance), exactly as the journal stores it.
- Its **canonical form** is ``orjson.dumps(record, option=OPT_SORT_KEYS)``: UTF-8, keys sorted at every
  level, no spaces.
- Its **record digest** is ``SHA-256(canonical form)`` (32 bytes).
- Its **chain hash** is ``SHA-256(previous chain hash || record digest)`` (32 + 32 bytes in, 32 out), where
  the previous chain hash of the first change (seq 1) is the **genesis**: 32 zero bytes.
- The **chain head** is ``(seq, hex of the chain hash)`` of the newest durable change; ``(0, 64 zeros)``
  before the first.

Because the chain covers digests rather than records, a purge can replace a record by what is left of it
plus its original digest and the chain still verifies (see `redact` in `fieldcomms/store/redact.py`). A
redacted record's remaining content is then covered only by its stored digest: the chain proves that *some*
record with that digest stood at that seq, and the digest of the original is what an earlier export or a
court copy can be compared with.

What the chain does not do on its own: someone able to rewrite every file of the data directory can rewrite
the whole chain from the point of an edit. The head must therefore be seen outside the data directory too
(`GET /api/v1/chain/head`, the head in every evidence bundle's manifest) for that to be found.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS = bytes(32)
GENESIS_HEX = GENESIS.hex()


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def record_digest(canonical_bytes: bytes) -> bytes:
    return hashlib.sha256(canonical_bytes).digest()


def link(previous: bytes, digest: bytes) -> bytes:
    """The chain hash of a change whose record digest is `digest`, after the change whose hash is `previous`."""
    return hashlib.sha256(previous + digest).digest()


def chain_of(records: list[dict[str, Any]], previous: bytes = GENESIS) -> bytes:
    """The chain hash after `records` (in seq order): for tests and for other backends to compare with."""
    for record in records:
        previous = link(previous, record_digest(canonical(record)))
    return previous
