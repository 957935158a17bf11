"""The outbox: sends the answers mailed to reporters (documents of the "mail" collection, written by
`fieldcomms.domain.replies` in the same journal record as the published verdict).

- Durable: the outbox holds no message of its own. It learns of pending ones from the store (an apply hook,
  which also runs while the store loads, so a message still pending when the server stopped is sent after it
  starts) and records every attempt in the store.
- At most once per (report, rumour): before a message is handed to the SMTP server its document is marked
  `in_flight` (durably); once the server has answered, the outcome is stored. A document found `in_flight`
  on start was interrupted mid-hand-over (the server may or may not have taken it): it is marked `failed`
  and not sent again, since a second copy is what was promised never to happen.
- Retries: a refused or unreachable server is tried again with exponential backoff (from a
  `mail_retry_minutes`/360 first delay, bounded to [0.05 s, 10 s], doubling, at most 5 minutes apart) until
  `mail_retry_minutes` after the message was queued; then it is `failed` with the last error.
- One message at a time: they are rare (one per reporter per verdict), and a slow SMTP server then costs one
  connection, not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from .config import Settings
from .model import now_str
from .store import StoreProtocol

log = logging.getLogger(__name__)

Doc = dict[str, Any]
MAIL = "mail"
SEND_TIMEOUT_S = 30.0
MAX_DELAY_S = 300.0
POLL_S = 0.5


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
    return msg


class Outbox:
    def __init__(self, settings: Settings, store: StoreProtocol) -> None:
        self.settings = settings
        self.store = store
        self.target = SmtpTarget.parse(settings.smtp_url) if settings.smtp_url else None
        self.window_s = max(settings.mail_retry_minutes, 0.0) * 60
        self.first_delay_s = min(max(self.window_s / 360, 0.05), 10.0)
        self._due: dict[str, float] = {}  # pending mail id -> when to try it (epoch seconds)
        self._interrupted: set[str] = set()  # found in flight while loading
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        store.on_apply(self._on_apply, {MAIL})

    def _on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if new.get("status") == "pending" and self.target is not None:
            if new.get("in_flight") and self._task is None:
                self._interrupted.add(new["id"])
            elif not new.get("in_flight"):
                # Loading (before start): try at once; the wait the outbox chose has passed while it was down.
                self._due[new["id"]] = float(new.get("next_at") or 0.0) if self._task is not None else 0.0
        else:
            self._due.pop(new["id"], None)
            self._interrupted.discard(new["id"])

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
            if doc is not None and doc.get("in_flight"):
                await self._store(doc, status="failed", error="the server stopped while handing this message to "
                                  "the SMTP server; it is not sent again, so that it cannot arrive twice")
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
        new = {**doc, **changes, "at": now_str()}
        return await self.store.append("mail", MAIL, new)

    async def _attempt(self, mail_id: str) -> None:
        doc = self.store.get(MAIL, mail_id)
        if doc is None or doc.get("status") != "pending" or self.target is None:
            self._due.pop(mail_id, None)
            return
        doc = await self._store(doc, in_flight=True, attempts=int(doc.get("attempts", 0)) + 1)
        target = self.target
        try:
            await aiosmtplib.send(build_message(doc, self.settings.mail_from), hostname=target.hostname,
                                  port=target.port, use_tls=target.use_tls, username=target.username,
                                  password=target.password, timeout=SEND_TIMEOUT_S)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".strip()[:500]
            elapsed = time.time() - float(doc.get("created_at") or 0.0)
            delay = min(self.first_delay_s * 2 ** (int(doc["attempts"]) - 1), MAX_DELAY_S)
            if elapsed + delay > self.window_s:
                log.warning("reply %s failed for good after %d attempts: %s", mail_id, doc["attempts"], error)
                await self._store(doc, in_flight=False, status="failed", error=error)
            else:
                await self._store(doc, in_flight=False, error=error, next_at=time.time() + delay)
            return
        self.sent += 1
        await self._store(doc, in_flight=False, status="sent", error=None)
