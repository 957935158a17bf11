"""The outbox: sends the answers mailed to reporters (documents of the "mail" collection, written by
`fieldcomms.domain.replies` in the same journal record as the published verdict).

- Durable: the outbox holds no message of its own. It learns of pending ones from the store (an apply hook,
  which also runs while the store loads, so a message still pending when the server stopped is sent after it
  starts) and records every attempt in the store.
- At most once per (report, rumour), in two recorded steps. A worker first *claims* the message (`in_flight`,
  `claimed_by`, `lease_until`: now + `mail_lease_s`), then connects to the SMTP server and greets it; only then
  does it record that it is *handing it over* (`handing`), and sends. With several workers on PostgreSQL every
  worker runs this outbox, and every one of these writes is a compare-and-set on the document's seq: of two
  workers claiming the same message one gets `WriteConflict` and leaves it, and a worker whose claim was taken
  over (it outlived its lease) fails to record `handing` and sends nothing.
  A claim whose lease ran out is its holder's death (or a stall): if it never reached `handing`, nothing was
  given to the SMTP server and another worker takes the message over and sends it; if it did, the server may
  or may not have the message, so it is marked `failed` and never sent again, since a second copy is what was
  promised never to happen. On the embedded store (one process) a claim found while loading is a dead
  process's, judged the same way at once, without waiting for the lease.
- Retries: a refused or unreachable server is tried again with exponential backoff (from a
  `mail_retry_minutes`/360 first delay, bounded to [0.05 s, 10 s], doubling, at most 5 minutes apart) until
  `mail_retry_minutes` after the message was queued; then it is `failed` with the last error.
- One message at a time per worker: they are rare (one per reporter per verdict), and a slow SMTP server then
  costs one connection, not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from .config import Settings
from .errors import WriteConflict
from .model import now_str
from .store import StoreProtocol

log = logging.getLogger(__name__)

Doc = dict[str, Any]
MAIL = "mail"
SEND_TIMEOUT_S = 30.0
MAX_DELAY_S = 300.0
POLL_S = 0.5
INTERRUPTED = ("the worker sending this message stopped while handing it to the SMTP server; it is not sent "
               "again, so that it cannot arrive twice")


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """`smtp://[user:password@]host[:port]` (STARTTLS when the server offers it) or `smtps://...` (TLS)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"smtp_url must look like smtp://host:port or smtps://host:port, not {url!r}")
        try:
            port = parts.port or (465 if scheme == "smtps" else 25)
        except ValueError:
            raise ValueError(f"smtp_url has a bad port: {url!r}") from None
        return cls(parts.hostname, port, scheme == "smtps",
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def build_message(doc: Doc, mail_from: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = doc["to"]
    msg["Subject"] = doc["subject"]
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=mail_from.rpartition("@")[2] or None)
    # RFC 3834: a machine wrote this; autoresponders (out-of-office) must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(doc["body"])
    if doc.get("html"):  # multipart/alternative: the plain text first, the HTML as the preferred rendering
        msg.add_alternative(doc["html"], subtype="html")
    return msg


class Outbox:
    def __init__(self, settings: Settings, store: StoreProtocol) -> None:
        self.settings = settings
        self.store = store
        self.target = SmtpTarget.parse(settings.smtp_url) if settings.smtp_url else None
        self.window_s = max(settings.mail_retry_minutes, 0.0) * 60
        self.first_delay_s = min(max(self.window_s / 360, 0.05), 10.0)
        # PostgreSQL: other workers run this outbox on the same messages; a claim found in the store may be a
        # live worker's. Embedded: this process is the only one, so a claim found while loading is a dead one's.
        self.shared = bool(settings.database_url)
        self.lease_s = settings.mail_lease_s
        self.worker = f"{socket.gethostname()}/{os.getpid()}"
        self._due: dict[str, float] = {}  # pending mail id -> when to look at it (epoch seconds)
        self._interrupted: set[str] = set()  # embedded: found claimed while loading
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.conflicts = 0  # claims or outcomes another worker's write got to first
        store.on_apply(self._on_apply, {MAIL})

    def _on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        mail_id = new["id"]
        if new.get("status") != "pending" or self.target is None:
            self._due.pop(mail_id, None)
            self._interrupted.discard(mail_id)
        elif new.get("in_flight"):
            if self.shared:
                # Claimed (by this worker or another): look again when the claim's lease runs out.
                self._due[mail_id] = float(new.get("lease_until") or 0.0)
            elif self._task is None:
                self._interrupted.add(mail_id)  # loading: the process that claimed it is gone
            # else: this process's own claim, being sent now
        else:
            self._interrupted.discard(mail_id)
            # Loading (before start): try at once; the wait the outbox chose has passed while it was down.
            self._due[mail_id] = float(new.get("next_at") or 0.0) if self._task is not None else 0.0

    async def start(self) -> None:
        if self.target is None:
            return  # no smtp_url: messages are stored as not-configured and nothing is ever sent
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mail-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        for mail_id in sorted(self._interrupted):
            doc = self.store.get(MAIL, mail_id)
            if doc is not None and doc.get("status") == "pending" and doc.get("in_flight"):
                await self._take_back(doc)
        self._interrupted.clear()
        while True:
            now = time.time()
            due = sorted((at, mail_id) for mail_id, at in self._due.items() if at <= now)
            for _, mail_id in due:
                try:
                    await self._attempt(mail_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a store failure must not end the outbox; the message stays pending
                    log.exception("mail outbox: attempt on %s failed", mail_id)
                    self._due[mail_id] = time.time() + self.first_delay_s
            # A plain sleep, at most POLL_S: a new message waits that long at most, and an idle outbox is one
            # timer. (An Event awaited through asyncio.wait_for here made the public page's live map lose new
            # markers in the browser tests, for a reason not found; a sleep did not.)
            wait = min(self._due.values(), default=now + POLL_S) - time.time()
            await asyncio.sleep(min(max(wait, 0.01), POLL_S))

    async def _store(self, doc: Doc, **changes: Any) -> Doc:
        """A new version of `doc` (which carries the seq it was read at: compare-and-set on PostgreSQL)."""
        new = {**doc, **changes, "at": now_str()}
        return await self.store.append("mail", MAIL, new)

    async def _take_back(self, doc: Doc) -> None:
        """A claim whose holder is gone: never handed over, the message is free again (and due now); handed
        over (or claimed before claims had two steps, when `handing` did not exist), it is failed for good."""
        try:
            if doc.get("handing", True):
                log.warning("reply %s: %s", doc["id"], INTERRUPTED)
                await self._store(doc, in_flight=False, handing=False, status="failed", error=INTERRUPTED)
            else:
                await self._store(doc, in_flight=False, claimed_by=None, lease_until=None, next_at=0.0)
        except WriteConflict:
            self.conflicts += 1  # another worker got there first; the apply hook has its outcome

    async def _attempt(self, mail_id: str) -> None:
        doc = self.store.get(MAIL, mail_id)
        if doc is None or doc.get("status") != "pending" or self.target is None:
            self._due.pop(mail_id, None)
            return
        if doc.get("in_flight"):
            lease_until = float(doc.get("lease_until") or 0.0)
            if self.shared and time.time() < lease_until:
                self._due[mail_id] = max(lease_until, time.time() + POLL_S)  # another worker holds it
                return
            # Its holder died or stalled past its lease; or (embedded, where this outbox awaits its own sends
            # one by one) it is this process's own claim, left by an attempt whose store write failed.
            await self._take_back(doc)
            return
        try:
            claimed = await self._store(doc, in_flight=True, handing=False, claimed_by=self.worker,
                                        lease_until=time.time() + self.lease_s,
                                        attempts=int(doc.get("attempts", 0)) + 1)
        except WriteConflict:
            self.conflicts += 1  # another worker claimed it (or settled it) first: theirs
            return
        await self._send(claimed)

    async def _send(self, claimed: Doc) -> None:
        target = self.target
        assert target is not None
        client = aiosmtplib.SMTP(hostname=target.hostname, port=target.port, use_tls=target.use_tls,
                                 username=target.username, password=target.password, timeout=SEND_TIMEOUT_S)
        current = claimed
        try:
            try:
                # Connect, TLS, log in and greet: nothing of the message has left yet.
                await client.connect()
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                try:
                    current = await self._store(claimed, handing=True, lease_until=time.time() + self.lease_s)
                except WriteConflict:
                    # This claim outlived its lease and another worker took the message over: it sends it.
                    self.conflicts += 1
                    log.warning("reply %s: claim taken over by another worker; not sending", claimed["id"])
                    return
                await client.send_message(build_message(current, self.settings.mail_from))
            finally:
                if client.is_connected:
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                        await client.quit()
                    client.close()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".strip()[:500]
            elapsed = time.time() - float(current.get("created_at") or 0.0)
            delay = min(self.first_delay_s * 2 ** (int(current["attempts"]) - 1), MAX_DELAY_S)
            done = {"in_flight": False, "handing": False, "claimed_by": None, "lease_until": None}
            try:
                if elapsed + delay > self.window_s:
                    log.warning("reply %s failed for good after %d attempts: %s", current["id"],
                                current["attempts"], error)
                    await self._store(current, **done, status="failed", error=error)
                else:
                    await self._store(current, **done, error=error, next_at=time.time() + delay)
            except WriteConflict:
                self.conflicts += 1  # taken over meanwhile (this claim outlived its lease): the taker decides
            return
        self.sent += 1
        await self._record_sent(current)

    async def _record_sent(self, doc: Doc) -> None:
        """The server took the message: so it is, even if another worker, seeing this claim outlive its
        lease while handing over, marked it failed meanwhile (it never sends it again)."""
        for _ in range(5):
            try:
                await self._store(doc, in_flight=False, handing=False, lease_until=None, status="sent",
                                  error=None)
                return
            except WriteConflict:
                self.conflicts += 1
                fresh = self.store.get(MAIL, doc["id"])
                if fresh is None or fresh.get("status") == "sent":
                    return
                doc = fresh
        log.error("reply %s was sent but could not be recorded as sent", doc["id"])
