"""The evidence bundle's source on PostgreSQL: one event, read from one snapshot of the database.

The exporter process (evidence/exporter.py) must not load a whole deployment to write one event's bundle (a
worker joining a million documents takes a minute). It reads, in one REPEATABLE READ, read-only transaction:

- the counter (the chain head the manifest names: the same snapshot as everything else read here);
- the event's current documents from `fc_state`: the row's bytes are searched for `"event":"<tag>"` inside
  PostgreSQL (`position()` over bytea, no JSON parsing there), then each candidate is parsed and its `event`
  compared here, so a look-alike inside some other field is not taken;
- the photos its updates and reports carry, by id;
- every stored version of its position documents from `fc_changes` (positions.csv lists every position
  recorded, not only the newest track): `POSITION_COLLS` names the collections, one line to extend.

These fill a `MemoryView` of their own, which the bundle writer reads exactly as it reads the embedded store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import psycopg
from psycopg import IsolationLevel

from ..store.chain import GENESIS_HEX
from ..store.memory import MemoryView
from .bundle import NoSuchEvent, photo_ids

Doc = dict[str, Any]

# The collections that hold an event's documents (every one with an "event" field the bundle or visibility
# reads): the bundle's own files, and what visibility consults for them (answers of rumours, mail of reports).
EVENT_COLLS = ("updates", "reports", "zones", "rumours", "alerts", "positions", "tracks", "decisions", "audit", "answers",
               "mail")
# Where officers' positions are recorded (their history goes into positions.csv).
POSITION_COLLS = ("positions",)
FETCH = 20_000


class StaleDatabase(Exception):
    """The database is behind the change the export must include (its access-log entry)."""


class PgEventView(MemoryView):
    """One event's documents as of one snapshot, queryable like the store (get, oldest_first, chain_head)."""

    def __init__(self) -> None:
        super().__init__()
        self.head: tuple[int, str] = (0, GENESIS_HEX)
        self.history: list[Doc] = []  # every stored version of the event's position documents, oldest first
        self._photo_updates: dict[str, list[str]] = defaultdict(list)

    def chain_head(self) -> tuple[int, str]:
        return self.head

    # Resolver (visibility consults it)
    def photo_updates(self, photo_id: str) -> Iterable[Doc]:
        for update_id in self._photo_updates.get(photo_id, ()):
            doc = self.get("updates", update_id)
            if doc is not None:
                yield doc

    def position_history(self) -> Iterator[Doc]:
        return iter(self.history)

    def _fill(self, docs: list[tuple[str, Doc]]) -> None:
        self._loading = True
        try:
            for coll, doc in sorted(docs, key=lambda cd: cd[1]["seq"]):
                self._apply(coll, doc, new=True)
                if coll == "updates":
                    for photo in doc.get("photos") or ():
                        self._photo_updates[str(photo["id"] if isinstance(photo, dict) else photo)].append(doc["id"])
        finally:
            self._end_loading()


def load_event(url: str, tag: str, min_seq: int = 0) -> PgEventView:
    """The event `tag` as the database holds it now; NoSuchEvent if it has none, StaleDatabase if the
    database's newest seq is below `min_seq`."""
    view = PgEventView()
    needle = b'"event":' + orjson.dumps(tag)
    docs: list[tuple[str, Doc]] = []
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            row = conn.execute("SELECT seq, hash FROM fc_counter WHERE id = 1").fetchone()
            assert row is not None
            seq = int(row[0])
            if seq < min_seq:
                raise StaleDatabase(f"the database stands at seq {seq}, before seq {min_seq}")
            view.head = (seq, bytes(row[1]).hex() if seq else GENESIS_HEX)
            event = conn.execute("SELECT doc FROM fc_state WHERE coll = 'events' AND id = %s AND seq > 0",
                                 (tag,)).fetchone()
            if event is None:
                raise NoSuchEvent(f"no event #{tag}")
            docs.append(("events", orjson.loads(bytes(event[0]))))
            with conn.cursor(name="fc_export_state", binary=True) as cur:
                cur.itersize = FETCH
                cur.execute("SELECT coll, doc FROM fc_state WHERE coll = ANY(%s) AND seq > 0 "
                            "AND position(%s::bytea in doc) > 0", (list(EVENT_COLLS), needle))
                for coll, raw in cur:
                    doc = orjson.loads(bytes(raw))
                    if doc.get("event") == tag:
                        docs.append((coll, doc))
            ids = photo_ids([d for c, d in docs if c == "updates"], [d for c, d in docs if c == "reports"])
            if ids:
                for (raw,) in conn.execute("SELECT doc FROM fc_state WHERE coll = 'photos' AND id = ANY(%s) "
                                           "AND seq > 0", (ids,)):
                    docs.append(("photos", orjson.loads(bytes(raw))))
            with conn.cursor(name="fc_export_history", binary=True) as cur:
                cur.itersize = FETCH
                cur.execute("SELECT record FROM fc_changes WHERE coll = ANY(%s) AND event = %s ORDER BY seq",
                            (list(POSITION_COLLS), tag))
                for (raw,) in cur:
                    data = orjson.loads(bytes(raw)).get("data")
                    if isinstance(data, dict) and data.get("event") == tag:
                        view.history.append(data)
    view._fill(docs)
    return view


async def record_export(url: str, tag: str, reason: str, actor: Doc) -> int:
    """`fieldcomms export --database-url`: the access-log entry, written beside running servers (PostgreSQL
    takes writes from anyone), without loading the deployment into this process; its seq. NoSuchEvent if
    the database has no such event."""
    from ..domain.audit import audit_entry
    from ..store.pg.store import PgStore
    from .auditlog import AUDIT

    class Appender(PgStore):
        """A PgStore that loads nothing: it appends, and follows only the changes after its start."""

        async def _load(self) -> None:
            async with await self._connect() as conn:
                row = await (await conn.execute("SELECT seq, hash FROM fc_counter WHERE id = 1")).fetchone()
                assert row is not None
                found = await (await conn.execute(
                    "SELECT 1 FROM fc_state WHERE coll = 'events' AND id = %s AND seq > 0", (tag,))).fetchone()
            if found is None:
                raise NoSuchEvent(f"no event #{tag}")
            self.last_seq = self.committed_seq = int(row[0])
            self._head = (int(row[0]), bytes(row[1]))

    store = Appender(url)
    await store.open()
    try:
        stored = await store.append("audit", AUDIT, audit_entry(actor, "event.export", ("event", tag), tag, reason))
        return int(stored["seq"])
    finally:
        await store.close()
