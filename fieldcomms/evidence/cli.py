"""`fieldcomms export`, `fieldcomms verify` and `fieldcomms purge --due`.

Each works whether a server runs on the data directory or not. With `--database-url` (PostgreSQL), servers
take writes from anyone: `export` records its access-log entry in the database itself and reads the event
from it (the data directory still holds the originals and the signing key), `purge --due` loads the
deployment and purges under the deployment's purge lock.

On the embedded store, without a server the command takes the lock and uses the store itself. With one (the
lock is held), it never writes the server's files: `export` reads them (snapshot + journal, read-only) and
asks the server, through the inbox (evidence/inbox.py), to record the access-log entry first, so no export
goes unrecorded; `purge --due` asks the server to purge, and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from ..config import Settings
from ..errors import DataDirLocked
from ..model import Problems, normalise_tag, text_value
from .inbox import Inbox

INBOX_TIMEOUT_S = 30.0


PURGE_TIMEOUT_S = 600.0


class UnknownEvent(Exception):
    pass


def _err(message: str) -> None:
    print(f"fieldcomms: {message}", file=sys.stderr)


def _reason(reason: str) -> str | None:
    from ..domain.audit import REASON_MAX, REASON_MIN

    p = Problems()
    text = text_value(reason, p, "reason", max_chars=REASON_MAX, min_chars=REASON_MIN)
    if text is None:
        _err(f"--reason must be {REASON_MIN} to {REASON_MAX} characters: say why the bundle is made")
    return text


async def _record_export_locally(settings: Settings, tag: str, reason: str) -> int | None:
    """Append the access-log entry with the store opened here; None if a server holds the lock. Raises
    UnknownEvent for an unknown event."""
    from ..domain.audit import cli_actor, record_access
    from ..services import Services
    from ..store import Store

    store = Store(settings.data_path, fsync=settings.fsync, snapshot_every=settings.snapshot_every)
    ctx = Services(settings, store)
    try:
        await store.open()
    except DataDirLocked:
        return None
    try:
        if store.get("events", tag) is None:
            raise UnknownEvent(f"no event #{tag}")
        entry = await record_access(ctx, cli_actor(), "event.export", ("event", tag), tag, reason)
        return int(entry["seq"])
    finally:
        await store.close(snapshot=False)


def _no_data_dir(settings: Settings) -> bool:
    if settings.data_path.is_dir():
        return False
    if settings.database_url:
        _err(f"{settings.data_path} is not a data directory (on PostgreSQL it still holds the photos' originals "
             "and the signing key: give the server's --data-dir)")
    else:
        _err(f"{settings.data_path} is not a data directory")
    return True


def _record_export_in_database(settings: Settings, tag: str, reason: str) -> int | None:
    """The access-log entry on PostgreSQL; None (said) if the database cannot take it."""
    from ..domain.audit import cli_actor
    from ..errors import StorageError
    from .bundle import NoSuchEvent
    from .pgsource import record_export

    try:
        return asyncio.run(record_export(settings.database_url, tag, reason, cli_actor()))
    except NoSuchEvent as exc:
        _err(str(exc))
    except StorageError as exc:
        _err(str(exc))
    return None


def export(settings: Settings, tag_arg: str, file: str, reason_arg: str) -> int:
    from ..domain.audit import audit_entry, cli_actor
    from .exporter import export_to

    reason = _reason(reason_arg)
    p = Problems()
    tag = normalise_tag(tag_arg, p)
    if reason is None or tag is None:
        if tag is None:
            _err(f"{tag_arg!r} is not an event tag")
        return 2
    data_dir = settings.data_path
    if _no_data_dir(settings):
        return 1
    if settings.database_url:
        seq = _record_export_in_database(settings, tag, reason)
        if seq is None:
            return 1
    else:
        try:
            seq = asyncio.run(_record_export_locally(settings, tag, reason))
        except UnknownEvent as exc:
            _err(str(exc))
            return 1
    if seq is None:  # a server runs: it records the entry
        from ..store import Store as ReadStore

        probe = ReadStore(data_dir)
        probe.load_read_only()
        if probe.get("events", tag) is None:
            _err(f"no event #{tag}")
            return 1
        entry = audit_entry(cli_actor(), "event.export", ("event", tag), tag, reason)
        answer = Inbox(data_dir).ask({"kind": "audit", "entry": entry}, INBOX_TIMEOUT_S)
        if answer is None or not answer.get("ok"):
            _err("the running server did not record the export in the access log "
                 f"({'no answer' if answer is None else answer.get('error')}); nothing was exported")
            return 1
        seq = int(answer["seq"])
    target = Path(file)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "wb") as out:
            bundle = export_to(out, data_dir=data_dir, tag=tag, reason=reason, generated_by=cli_actor(),
                               min_seq=seq, database_url=settings.database_url)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    size = target.stat().st_size
    print(f"wrote {target} ({size} bytes, {len(bundle.files)} files, chain head seq "
          f"{bundle.manifest['chain_head']['seq']}); recorded in the access log at seq {seq}")
    return 0


def verify(file: str, key: str | None) -> int:
    from .verify import verify_bundle

    verdict = verify_bundle(Path(file), Path(key) if key else None)
    if verdict.ok:
        print(verdict.message)
        return 0
    print(f"FAILED: {verdict.message}")
    return 1


async def _purge_locally(settings: Settings) -> list[dict[str, object]] | None:
    from ..domain.audit import cli_actor
    from ..domain.purge import purge_due
    from ..services import Services
    from ..store import Store

    store = Store(settings.data_path, fsync=settings.fsync, snapshot_every=settings.snapshot_every)
    ctx = Services(settings, store)
    try:
        await store.open()
    except DataDirLocked:
        return None
    try:
        return await purge_due(ctx, cli_actor())
    finally:
        await store.close()


async def _purge_in_database(settings: Settings) -> list[dict[str, object]] | None:
    """purge --due on PostgreSQL: this process loads the deployment and purges beside running servers
    (each of them applies the erasure to its own view); None (said) if the database cannot be used."""
    from ..domain.audit import cli_actor
    from ..domain.purge import purge_due
    from ..errors import ApiError, StorageError
    from ..services import Services
    from ..store import make_store

    store = make_store(settings)
    ctx = Services(settings, store)
    try:
        await store.open()
    except StorageError as exc:
        _err(str(exc))
        return None
    try:
        return await purge_due(ctx, cli_actor())
    except ApiError as exc:  # another purge held the lock too long, or the database went away meanwhile
        _err(exc.detail)
        return None
    finally:
        await store.close()


def purge_due(settings: Settings) -> int:
    from ..domain.audit import cli_actor

    if _no_data_dir(settings):
        return 1
    if settings.database_url:
        in_db = asyncio.run(_purge_in_database(settings))
        if in_db is None:
            return 1
        return _report_purged(in_db)
    done = asyncio.run(_purge_locally(settings))
    if done is None:
        answer = Inbox(settings.data_path).ask({"kind": "purge-due", "actor": cli_actor()}, PURGE_TIMEOUT_S)
        if answer is None or not answer.get("ok"):
            _err("the running server did not carry out the purge "
                 f"({'no answer' if answer is None else answer.get('error')})")
            return 1
        done = answer["purged"]
        print("(carried out by the running server)")
    return _report_purged(done)


def _report_purged(done: list[dict[str, object]]) -> int:
    if not done:
        print("no event is due for purging")
    for d in done:
        print(f"purged #{d['event']}: {d['positions']} position documents, {d.get('tracks', 0)} track documents, "
              f"{d['report_contacts']} report contacts, {d['original_photos']} original photos")
    return 0

