"""Versioned schema migrations, shipped with the code and applied at start (under an advisory lock, so
workers starting together do it once). A database whose schema is newer than the code is refused."""

from __future__ import annotations

from psycopg import AsyncConnection

from ...errors import StoreUnavailable

# The one-row counter, not a SEQUENCE: sequence values are neither gapless nor in commit order, and a reader
# resuming "after N" would silently skip a lower seq that commits late. The counter row is updated last in
# each write transaction, so its lock orders commits and the seq it hands out is the commit order.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE fc_counter (
        id int PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        hash bytea NOT NULL              -- chain hash of the change at seq
    );
    INSERT INTO fc_counter VALUES (1, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000');
    -- Append-only: every change, as the journal record the embedded store would write (orjson bytes);
    -- chain = SHA-256(previous chain || SHA-256(the record in canonical form: sorted keys)).
    CREATE TABLE fc_changes (
        seq bigint PRIMARY KEY,
        type text NOT NULL,
        coll text NOT NULL,
        id text NOT NULL,
        event text NOT NULL,
        record bytea NOT NULL,
        chain bytea NOT NULL
    );
    -- The current version of every item (idempotency answers too), for a worker joining late.
    CREATE TABLE fc_state (
        coll text NOT NULL,
        id text NOT NULL,
        seq bigint NOT NULL,
        doc bytea NOT NULL,
        PRIMARY KEY (coll, id)
    );
    CREATE INDEX fc_state_seq ON fc_state (seq);
    -- Callsigns and token hashes: unique across workers, checked in the writing transaction.
    CREATE TABLE fc_unique (
        coll text NOT NULL,
        name text NOT NULL,
        key text NOT NULL,
        id text NOT NULL,
        PRIMARY KEY (coll, name, key)
    );
    CREATE INDEX fc_unique_id ON fc_unique (coll, id);
    -- Token buckets shared by every worker (public reports, failed logins).
    CREATE TABLE fc_rate (
        key text PRIMARY KEY,
        tokens double precision NOT NULL,
        at double precision NOT NULL
    );
    """,
    # 2: the token bucket as one function, on the database's clock, so every worker spends from the same bucket.
    """
    CREATE FUNCTION fc_take_token(k text, rate double precision, burst double precision)
    RETURNS double precision LANGUAGE plpgsql AS $$
    DECLARE
        now_ double precision := extract(epoch FROM clock_timestamp());
        t double precision;
    BEGIN
        INSERT INTO fc_rate VALUES (k, burst, now_) ON CONFLICT (key) DO NOTHING;
        SELECT least(burst, tokens + greatest(0, now_ - at) * rate) INTO t FROM fc_rate WHERE key = k FOR UPDATE;
        IF t >= 1 THEN
            UPDATE fc_rate SET tokens = t - 1, at = now_ WHERE key = k;
            RETURN 0;
        END IF;
        UPDATE fc_rate SET tokens = t, at = now_ WHERE key = k;
        RETURN (1 - t) / rate;
    END $$;
    """,
]

VERSION = len(MIGRATIONS)


async def migrate(conn: AsyncConnection) -> int:
    """Bring the schema up to VERSION; returns the version found. Runs in one transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7215042001)")
        await conn.execute("CREATE TABLE IF NOT EXISTS fc_schema (id int PRIMARY KEY CHECK (id = 1), "
                           "version int NOT NULL)")
        row = await (await conn.execute("SELECT version FROM fc_schema WHERE id = 1")).fetchone()
        found = 0 if row is None else int(row[0])
        if found > VERSION:
            raise StoreUnavailable(f"the database schema is version {found}, newer than this fieldcomms "
                                   f"(version {VERSION}); upgrade fieldcomms before serving this database")
        for sql in MIGRATIONS[found:]:
            await conn.execute(sql)  # type: ignore[arg-type]
        await conn.execute("INSERT INTO fc_schema VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET version = %s",
                           (VERSION, VERSION))
    return found
