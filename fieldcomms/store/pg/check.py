"""`fieldcomms check --database-url URL`: verify a PostgreSQL deployment without changing it (safe while
servers run): seqs gapless from 1 to the counter, every change's chain hash, and the current state.

A record rewritten by the retention purge (store/pg/redact.py) carries `"redacted": true` and the digest of
its original; the chain covers that digest, as on the embedded journal."""

from __future__ import annotations

import orjson
import psycopg
from psycopg import AsyncConnection, IsolationLevel

from ..chain import link
from ..redact import digest_of
from .chainhash import GENESIS
from .migrations import VERSION
from .store import one_line, parse_url


async def check_database(url: str) -> int:
    """Prints a report; returns the exit status (1 naming the first seq where the chain breaks)."""
    from ...errors import StoreUnavailable

    try:
        parse_url(url)
        conn = await AsyncConnection.connect(url, connect_timeout=3)
    except (StoreUnavailable, psycopg.Error) as exc:
        print(f"fieldcomms: cannot check the database: {exc if isinstance(exc, StoreUnavailable) else one_line(exc)}")
        return 1
    problems: list[str] = []
    async with conn:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            row = await (await conn.execute("SELECT version FROM fc_schema WHERE id = 1")).fetchone()
            version = 0 if row is None else row[0]
            counter = await (await conn.execute("SELECT seq, hash FROM fc_counter WHERE id = 1")).fetchone()
            assert counter is not None
            top, top_hash = int(counter[0]), bytes(counter[1])
            expected, prev, changes, redacted = 1, GENESIS, 0, 0
            async with conn.cursor(name="fc_check") as cur:
                cur.itersize = 10_000
                await cur.execute("SELECT seq, record, chain FROM fc_changes ORDER BY seq")
                async for seq, record, chain in cur:
                    changes += 1
                    if seq != expected and not problems:
                        problems.append(f"seq {expected} is missing (the next change is seq {seq})")
                    rec = orjson.loads(record)
                    if rec.get("redacted") is True:
                        redacted += 1
                    prev = link(prev, digest_of(rec))
                    if prev != bytes(chain) and not problems:
                        problems.append(f"the chain breaks at seq {seq}" + (
                            " (a redacted record whose stored digest does not match)"
                            if rec.get("redacted") is True else ""))
                    expected = seq + 1
            if expected - 1 != top and not problems:
                problems.append(f"the counter says seq {top} but the changes end at {expected - 1}")
            elif top and prev != top_hash and not problems:
                problems.append(f"the counter's hash does not match the chain at seq {top}")
            state = await (await conn.execute("SELECT count(*), count(*) FILTER (WHERE seq > %s OR seq <= 0) "
                                              "FROM fc_state", (top,))).fetchone()
            assert state is not None
            if state[1]:
                problems.append(f"{state[1]} current-state rows name a seq the changes table does not hold")
    print(f"fieldcomms check {url}")
    print(f"  schema: version {version} (this fieldcomms: {VERSION})")
    print(f"  changes: {changes} ({redacted} redacted by a purge), newest seq {top}, chain "
          + ("verified" if not problems else "NOT verified"))
    print(f"  current state: {state[0]} documents")
    for p in problems:
        print(f"  PROBLEM: {p}")
    print("OK" if not problems else f"{len(problems)} problem(s) found")
    return 0 if not problems else 1
