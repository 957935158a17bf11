"""PushService: an alert's new recipients -> one push on each of their subscriptions.

It owns the VAPID key (made at the first start, in the data directory) and the sender thread, and ends a
subscription the push service says is gone (404/410). The payload carries the alert and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ..config import Settings
from ..domain.subscriptions import SUBSCRIPTIONS, Subscriptions
from ..errors import StorageError
from ..store import StoreProtocol
from .sender import PushJob, PushSender
from .vapid import VapidSigner, load_or_create, public_key

log = logging.getLogger(__name__)
Doc = dict[str, Any]


def alert_payload(alert: Doc) -> bytes:
    return orjson.dumps({"type": "alert", "id": alert["id"], "event": alert["event"], "text": alert["text"],
                         "location": alert["location"], "radius_m": alert["radius_m"],
                         "sent_at": alert["created_at"]})


class PushService:
    def __init__(self, settings: Settings, store: StoreProtocol, subscriptions: Subscriptions) -> None:
        self.settings = settings
        self.store = store
        self.subscriptions = subscriptions
        self.public_key = ""
        self.sender: PushSender | None = None
        self._ending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """After the store has opened (it made and locked the data directory)."""
        key = await asyncio.to_thread(load_or_create, self.settings.data_path)
        self.public_key = public_key(key)
        self.sender = PushSender(VapidSigner(key, self.settings.push_contact),
                                 allow_insecure=self.settings.push_allow_insecure_endpoints,
                                 concurrency=self.settings.push_concurrency, timeout_s=self.settings.push_timeout_s,
                                 on_gone=self._gone)
        await self.sender.start()

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)

    def alert_recipients(self, alert: Doc, officer_ids: list[str]) -> None:
        """Queue one push per subscription of each officer; returns at once."""
        if self.sender is None:
            return
        payload = alert_payload(alert)
        jobs = [PushJob(sub["id"], sub["endpoint"], sub["keys"]["p256dh"], sub["keys"]["auth"], payload)
                for officer_id in officer_ids for sub in self.subscriptions.of(officer_id)]
        self.sender.submit(jobs)

    def _gone(self, sub_id: str, status: int) -> None:
        doc = self.store.get(SUBSCRIPTIONS, sub_id)
        if doc is None or doc.get("ended"):
            return
        task = asyncio.get_running_loop().create_task(self._end(doc, status))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end(self, doc: Doc, status: int) -> None:
        try:
            await self.subscriptions.end(doc, f"the push service answered {status}")
        except StorageError as exc:
            log.warning("could not end push subscription %s: %s", doc["id"], exc)
