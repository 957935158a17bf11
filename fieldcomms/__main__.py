"""Command line: fieldcomms serve | user add | user revoke | demo | check | salvage | migrate | export | verify |
purge --due; fieldcomms --version."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from . import __version__
from .auth import make_user
from .config import Settings, load_settings
from .domain.audit import cli_actor, record_access
from .errors import DataDirLocked, StorageError, WriteConflict
from .keys import SERVICES
from .model import ROLES, validate_user
from .services import Services
from .store import StoreProtocol, make_store


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    values = {"data_dir": getattr(args, "data_dir", None), "database_url": getattr(args, "database_url", None),
              **overrides}
    return load_settings(getattr(args, "config", None), overrides=values)


async def _bootstrap_admin(ctx: Services) -> str | None:
    """On an empty data directory, an admin to log in with: a new user is in within a minute."""
    # Once per data directory: an admin ever made (even one revoked since) means the deployment has been set
    # up, and printing a fresh admin token at every start would hand one to whoever reads the logs.
    if not ctx.settings.demo_admin or any(u["role"] == "admin" for u in ctx.store.all("users")):
        return None
    doc, token = make_user("Administrator", "admin", "admin")
    await ctx.store.append("user", "users", doc)
    return token


# The cyclic garbage collector, tuned for a server whose heap only grows (stored items are acyclic and live
# until shutdown): the default thresholds (700, 10, 10) make it walk a growing heap over and over, which cost
# a fifth of POST throughput and put 150-200 ms pauses at the p99 (make bench BENCH=spine: p99 136-195 ms with
# the defaults, 32-40 ms with these). Young garbage is still collected every 50,000 allocations.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """What is alive once the server has started (the loaded store, modules) is set aside for good, and the
    collector runs less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, *, worker: int = 0) -> int:
    from .app import create_app
    from .ops import configure_logging
    from .server import FieldcommsRunner, wait_for_stop_signal

    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
        runner = FieldcommsRunner(app, settings)
        await runner.setup()
    except StorageError as exc:  # locked, a journal damaged beyond a torn tail, a bad or unreachable database
        print(f"fieldcomms: cannot serve: {exc}", file=sys.stderr)
        return 1
    ctx = app[SERVICES]
    token = await _bootstrap_admin(ctx) if worker == 0 else None  # one worker makes the first admin
    tune_gc()
    # Many handsets and thousands of stream subscribers connect at once when an event goes live. Workers
    # started by `--workers N` share the port (SO_REUSEPORT): the kernel spreads connections over them.
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_port=settings.workers > 1)
    try:
        await site.start()
    except OSError as exc:
        print(f"fieldcomms: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        await runner.cleanup()
        return 1
    base = f"http://{settings.host}:{settings.port}"
    where = "PostgreSQL" if settings.database_url else str(settings.data_path.resolve())
    print(f"fieldcomms serving {base} with data in {where} (seq {ctx.store.last_seq})", flush=True)
    if token is not None:
        print("No admin user yet: created one. Its token (shown once):", flush=True)
        print(f"  {token}", flush=True)
    events = sorted(ctx.store.all("events"), key=lambda e: e["seq"])
    for event in events[-3:]:
        print(f"  public page:  {base}/events/{event['tag']}\n  control room: {base}/control/{event['tag']}",
              flush=True)
    print(f"  API document: {base}/api/v1/openapi.json", flush=True)
    sig = await wait_for_stop_signal()
    started = time.monotonic()
    print(f"fieldcomms: {sig.name}: shutting down (streams end now; requests in flight get "
          f"{settings.shutdown_grace_s:g} s)", flush=True)
    # Ending thousands of streams allocates a little per connection, enough for the collector to walk the
    # whole heap several times over (measured with 5,000 streams: 2.4 s to stop, 1.4 s without that). Nothing
    # that lives now needs collecting on the way out, so it is set aside.
    gc.freeze()
    await runner.cleanup()
    print(f"fieldcomms: stopped in {time.monotonic() - started:.2f} s (seq {ctx.store.last_seq})", flush=True)
    return 0


async def _with_store(settings: Settings) -> tuple[StoreProtocol, Services] | None:
    try:
        store = make_store(settings)
        ctx = Services(settings, store)
        await store.open()
    except DataDirLocked as exc:
        print(f"fieldcomms: {exc}. A running server holds it: add users through POST /api/v1/users "
              "with an admin token, or stop the server first.", file=sys.stderr)
        return None
    except StorageError as exc:  # unreachable or too new a database, a journal damaged beyond a torn tail
        print(f"fieldcomms: {exc}", file=sys.stderr)
        return None
    return store, ctx


def sign_in_link(settings: Settings, token: str) -> str:
    """The handset app's sign-in link: the token rides in the fragment, which browsers never send to a server
    (nor to a proxy's log), and the app removes it from the address bar at once."""
    return f"{settings.public_base_url}/app#token={token}"


def print_qr(link: str) -> None:
    import segno

    # Error correction M survives a smudged or creased printout; compact halves the height in a terminal.
    segno.make(link, error="m").terminal(compact=True)


async def user_add(settings: Settings, name: str, callsign: str, role: str, qr: bool = False) -> int:
    from .errors import ValidationFailed

    try:
        data = validate_user({"name": name, "callsign": callsign, "role": role})
    except ValidationFailed as exc:
        print(f"fieldcomms: {exc.detail}", file=sys.stderr)
        return 2
    opened = await _with_store(settings)
    if opened is None:
        return 1
    store, ctx = opened
    try:
        if store.get_by("users", "callsign", callsign.lower()) is not None:
            print(f"fieldcomms: the callsign {callsign} is taken", file=sys.stderr)
            return 1
        doc, token = make_user(data["name"], data["callsign"], data["role"])
        try:
            await store.append("user", "users", doc)
        except WriteConflict:  # PostgreSQL: a server took the callsign a moment ago
            print(f"fieldcomms: the callsign {callsign} is taken", file=sys.stderr)
            return 1
        await record_access(ctx, cli_actor(), "user.create", ("user", str(doc["id"])), None, None)
    finally:
        await store.close()
    if qr:
        link = sign_in_link(settings, token)
        print(f"Sign-in link for the handset app (scan the code with the officer's phone): {link}")
        print_qr(link)
    print(f"Created {data['role']} {data['callsign']} ({doc['id']}). Token, shown once:")
    print(token)
    return 0


async def user_revoke(settings: Settings, callsign: str) -> int:
    opened = await _with_store(settings)
    if opened is None:
        return 1
    store, ctx = opened
    try:
        user = store.get_by("users", "callsign", callsign.lower())
        if user is None:
            print(f"fieldcomms: no user with the callsign {callsign}", file=sys.stderr)
            return 1
        for _attempt in range(5):
            try:
                await store.append("user", "users", {**user, "revoked": True})
                break
            except WriteConflict:  # PostgreSQL: a server changed the user meanwhile; revoke the newer version
                user = store.get_by("users", "callsign", callsign.lower()) or user
        await record_access(ctx, cli_actor(), "user.revoke", ("user", user["id"]), None, None)
    finally:
        await store.close()
    print(f"Revoked the token of {callsign}.")
    return 0


def check(settings: Settings) -> int:
    from .check import check_data_dir

    if settings.database_url:
        from .store.pg.check import check_database

        return asyncio.run(check_database(settings.database_url))

    report = check_data_dir(settings.data_path, workers=os.cpu_count() or 1)
    print(f"fieldcomms check {settings.data_path.resolve()}")
    for line in report.lines():
        print(f"  {line}" if line != "OK" and not line.endswith("found") else line)
    return 0 if report.ok else 1


def salvage(settings: Settings) -> int:
    from .store import DataDirLock
    from .store.salvage import salvage as salvage_dir

    data_dir = settings.data_path
    if not data_dir.is_dir():
        print(f"fieldcomms: {data_dir} is not a directory", file=sys.stderr)
        return 1
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirLocked as exc:
        print(f"fieldcomms: {exc}", file=sys.stderr)
        return 1
    try:
        report = salvage_dir(data_dir)
    finally:
        lock.release()
    if not report.copies:
        print("Nothing to salvage: no damaged journal segment (a torn tail is dropped by the server on start).")
        return 0
    for copy in report.copies:
        print(f"copied the damaged file aside: {copy}")
    print(f"kept {report.kept} readable change(s); dropped {report.dropped_lines} unreadable line(s)")
    for first, last in report.lost:
        print(f"LOST: changes {first} to {last} (recorded in salvage.json; `fieldcomms check` notes them)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fieldcomms", description=__doc__)
    p.add_argument("--version", action="version", version=f"fieldcomms {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, database: bool = True) -> None:
        sp.add_argument("--data-dir", help="data directory (FIELDCOMMS_DATA_DIR; default ./data)")
        sp.add_argument("--config", help="TOML settings file (FIELDCOMMS_CONFIG)")
        if database:
            sp.add_argument("--database-url", help="postgresql://user@host:port/dbname: the deployment lives in "
                            "PostgreSQL (FIELDCOMMS_DATABASE_URL; default: the embedded store in --data-dir)")

    s = sub.add_parser("serve", help="run the server")
    common(s)
    s.add_argument("--host", help="address to listen on (FIELDCOMMS_HOST; default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (FIELDCOMMS_PORT; default 8080)")
    s.add_argument("--workers", type=int, help="serving processes on one port; above 1 needs --database-url "
                   "(FIELDCOMMS_WORKERS; default 1)")
    s.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)  # set by the supervisor

    u = sub.add_parser("user", help="manage users")
    usub = u.add_subparsers(dest="user_command", required=True)
    a = usub.add_parser("add", help="make a user and print its token on the last line")
    common(a)
    a.add_argument("--name", required=True)
    a.add_argument("--callsign", required=True)
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--qr", action="store_true",
                   help="also print the handset app's sign-in link (base_url + /app#token=...) and its QR code")
    a.add_argument("--base-url", help="the server's public URL for the link (FIELDCOMMS_BASE_URL; setting base_url)")
    r = usub.add_parser("revoke", help="end a user's token")
    common(r)
    r.add_argument("callsign")

    c = sub.add_parser("check", help="verify a data directory (the tamper-evident chain from the first change, "
                                     "checksums, the snapshot against the journal, media files) or a database "
                                     "(gapless seqs, the chain); exit 1 on a problem")
    common(c)
    sv = sub.add_parser("salvage", help="on a stopped server: copy damaged journal segments aside, then keep their "
                                        "readable changes and record what was lost")
    common(sv, database=False)
    m = sub.add_parser("migrate", help="copy an embedded deployment (--data-dir) into an empty PostgreSQL "
                       "database (--database-url), every change with its seq")
    common(m)
    e = sub.add_parser("export", help="write an event's evidence bundle (works beside a running server)")
    common(e)
    e.add_argument("tag", help="the event's tag")
    e.add_argument("file", help="the zip file to write")
    e.add_argument("--reason", required=True, help="why the bundle is made (3 to 500 characters; access log)")
    v = sub.add_parser("verify", help="check an evidence bundle offline: files, manifest, signature")
    v.add_argument("file", help="the bundle (zip)")
    v.add_argument("--key", help="the deployment's public key (PEM, or base64 as GET /api/v1/chain/key gives it)")
    pg = sub.add_parser("purge", help="apply the retention policy (works with or without a running server)")
    common(pg)
    pg.add_argument("--due", action="store_true", required=True,
                    help="purge every closed event whose retain_until has passed")
    d = sub.add_parser("demo", help="load the Sheffield 2011 demonstration event and print its users' tokens "
                       "and the URLs to open once `fieldcomms serve` runs with the same settings")
    common(d, database=False)
    d.add_argument("--host", help="the address `serve` will listen on, for the URLs printed (FIELDCOMMS_HOST)")
    d.add_argument("--port", type=int, help="the port `serve` will listen on, for the URLs printed (FIELDCOMMS_PORT)")
    return p


def _is_worker() -> bool:
    import os

    return os.environ.get("FIELDCOMMS_WORKER_OF") is not None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Everything this program creates (journal, snapshots, photos and their originals, keys, the lock) is for
    # this user alone: 0600 files, 0700 directories, whatever umask the shell or the service manager had.
    os.umask(0o077)
    if args.command == "serve":
        settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
        if settings.workers > 1 and args.worker_index == 0 and not _is_worker():
            from .workers import supervise

            return supervise(settings, sys.argv[1:] if argv is None else list(argv))
        return asyncio.run(serve(settings, worker=args.worker_index))
    if args.command == "user" and args.user_command == "add":
        return asyncio.run(user_add(_settings(args, base_url=args.base_url), args.name, args.callsign, args.role,
                                    qr=args.qr))
    if args.command == "user" and args.user_command == "revoke":
        return asyncio.run(user_revoke(_settings(args), args.callsign))
    if args.command == "check":
        return check(_settings(args))
    if args.command == "salvage":
        return salvage(_settings(args))
    if args.command == "migrate":
        settings = _settings(args)
        if not settings.database_url:
            print("fieldcomms: migrate needs --database-url (where to copy the deployment to)", file=sys.stderr)
            return 2
        from .store.pg.copy import copy_data_dir

        return asyncio.run(copy_data_dir(settings))

    if args.command == "export":
        from .evidence.cli import export

        return export(_settings(args), args.tag, args.file, args.reason)
    if args.command == "verify":
        from .evidence.cli import verify

        return verify(args.file, args.key)
    if args.command == "purge":
        from .evidence.cli import purge_due

        return purge_due(_settings(args))
    if args.command == "demo":
        from .demo import run as run_demo

        return asyncio.run(run_demo(_settings(args, host=args.host, port=args.port)))
    return 2


if __name__ == "__main__":
    sys.exit(main())
