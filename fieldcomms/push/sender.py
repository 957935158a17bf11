"""PushSender: posts encrypted pushes from a bounded pool on its own thread, so the server's loop never waits.

One thread runs its own event loop with one aiohttp client session: at most `push_concurrency` pushes are in
flight, each one encrypted (RFC 8291 aes128gcm, a fresh ECDH key and salt per message, by pywebpush) in that
thread, then posted with `TTL`, `Urgency` and the VAPID `Authorization`. The server's loop only hands over a
list of jobs (`submit`, which never blocks) and hears back about subscriptions the push service has ended
(404/410). A thread with its own loop rather than a pool of blocking threads: a thousand pushes are a thousand
waits on the network, which one loop holds cheaply, while the encryption needs the CPU either way.

Every connection goes through `PublicResolver`, which refuses a host that resolves to any address that is
not public: the check is made on the very addresses connected to, so a DNS answer that changed since the
subscription was checked cannot lead the server into an internal network. Literal IP hosts never reach a
resolver, so they are checked before posting; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from py_vapid import VapidException
from pywebpush import WebPusher, WebPushException

from .endpoints import EndpointRefused, is_public, literal_ip, parse_endpoint
from .vapid import VapidSigner

log = logging.getLogger(__name__)

TTL_S = 600
MAX_PENDING = 100_000  # jobs waiting for a slot; beyond this a burst is dropped (and logged), not queued forever
GONE = (404, 410)


@dataclass(frozen=True, slots=True)
class PushJob:
    subscription_id: str
    endpoint: str
    p256dh: str
    auth: str
    payload: bytes


class PublicResolver(AbstractResolver):
    """The system resolver, refusing any host with an address that is not public (see endpoints.py)."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not is_public(result["host"]):
                raise OSError(f"push endpoint host {host} resolves to {result['host']}, which is not public")
        return results

    async def close(self) -> None:
        await self._inner.close()


class PushSender:
    def __init__(self, signer: VapidSigner, *, allow_insecure: bool, concurrency: int, timeout_s: float,
                 on_gone: Callable[[str, int], None]) -> None:
        self.signer = signer
        self.allow_insecure = allow_insecure
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.on_gone = on_gone  # called on the server's loop with (subscription id, status)
        self.sent = self.gone = self.failed = self.refused = self.dropped = 0
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle (called on the server's loop) ---------------------------------------------------

    async def start(self) -> None:
        self._main = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="fieldcomms-push", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, 10)

    async def stop(self) -> None:
        """Stop at once: pushes still waiting are dropped (a push is worth little minutes later anyway)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def submit(self, jobs: list[PushJob]) -> None:
        """Hand jobs to the sending thread; never blocks."""
        if not jobs:
            return
        if self._loop is None or self._loop.is_closed():
            log.warning("push sender not running: %d pushes dropped", len(jobs))
            return
        self._loop.call_soon_threadsafe(self._enqueue, jobs)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "gone": self.gone, "failed": self.failed, "refused": self.refused,
                "dropped": self.dropped, "pending": self._pending}

    # ---- the sending thread ------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(resolver=PublicResolver(), limit=self.concurrency)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._loop = loop
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._session.close()

    def _enqueue(self, jobs: list[PushJob]) -> None:
        assert self._loop is not None
        for job in jobs:
            if self._pending >= MAX_PENDING:
                self.dropped += 1
                continue
            self._pending += 1
            task = self._loop.create_task(self._send(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.dropped:
            log.warning("push backlog full: %d pushes dropped so far", self.dropped)

    async def _send(self, job: PushJob) -> None:
        assert self._slots is not None and self._session is not None
        try:
            async with self._slots:
                await self._post(job)
        except asyncio.CancelledError:
            raise
        except EndpointRefused as exc:
            self.refused += 1
            log.warning("push to subscription %s refused: the endpoint %s", job.subscription_id, exc)
        except (aiohttp.ClientError, OSError, TimeoutError, WebPushException, VapidException, ValueError) as exc:
            self.failed += 1
            log.warning("push to subscription %s failed: %r", job.subscription_id, exc)
        finally:
            self._pending -= 1

    async def _post(self, job: PushJob) -> None:
        assert self._session is not None
        parts = parse_endpoint(job.endpoint, self.allow_insecure)
        host = parts.hostname or ""
        ip = literal_ip(host)
        if not self.allow_insecure and ip is not None and not is_public(ip):
            raise EndpointRefused(f"is on {ip}, which is not a public address")  # literal IPs skip the resolver
        origin = f"{parts.scheme.lower()}://{parts.netloc.rsplit('@', 1)[-1]}"
        body = WebPusher({"endpoint": job.endpoint, "keys": {"p256dh": job.p256dh, "auth": job.auth}}).encode(
            job.payload, "aes128gcm")["body"]
        headers = {"TTL": str(TTL_S), "Urgency": "high", "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "Authorization": self.signer.authorization(origin)}
        async with self._session.post(job.endpoint, data=body, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            await resp.content.read(64 * 1024)  # drain a little so the connection can be reused
        if status in GONE:
            self.gone += 1
            if self._main is not None:
                self._main.call_soon_threadsafe(self.on_gone, job.subscription_id, status)
        elif 200 <= status < 300:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("push to subscription %s: the push service answered %d", job.subscription_id, status)
