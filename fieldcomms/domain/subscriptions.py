"""Officers' push subscriptions: one stored document per browser push endpoint.

A subscription is what a handset's browser gives the app (`PushSubscription.toJSON()`): the push service
endpoint and the keys to encrypt for. The same endpoint posted twice is one subscription (a handset
re-subscribes at every start); posted by another officer, it moves to them, since the handset is now theirs.
A subscription ends when its owner deletes it or when the push service answers 404/410; the document stays,
marked `ended`, so that the journal tells what happened.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import NotFound, ValidationFailed
from ..model import Problems, check_unknown, new_id, now_str, require_object
from ..push.endpoints import EndpointRefused, check_endpoint, parse_endpoint
from ..store import StoreProtocol
from ..visibility import Viewer, view

Doc = dict[str, Any]
SUBSCRIPTIONS = "push_subscriptions"
MAX_KEY_CHARS = 200
# Handsets an officer may have subscribed at once; a new one beyond this ends their oldest. One officer token
# must not be able to turn every alert into thousands of posts to hosts of its choosing.
MAX_PER_OFFICER = 10


def _b64url(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def validate_subscription(body: Any, allow_insecure: bool) -> Doc:
    """The subscription's endpoint and keys, or 422 naming every bad field (the endpoint's addresses are
    checked afterwards, by `subscribe`)."""
    data = require_object(body)
    p = Problems()
    check_unknown(data, ("endpoint", "expirationTime", "keys"), p)
    endpoint = data.get("endpoint")
    try:
        parse_endpoint(endpoint, allow_insecure)
    except EndpointRefused as exc:
        p.add("endpoint", str(exc))
    keys = data.get("keys")
    if not isinstance(keys, dict):
        p.add("keys", "is required: {p256dh, auth}, as the browser's PushSubscription gives them")
    else:
        check_unknown(keys, ("p256dh", "auth"), p, "keys.")
        point = _b64url(keys.get("p256dh"))
        if point is None or len(point) != 65 or point[0] != 4:
            p.add("keys.p256dh", "must be a P-256 public key: an uncompressed point (65 bytes), base64url")
        else:
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            except ValueError:
                p.add("keys.p256dh", "is not a point on the P-256 curve")
        secret = _b64url(keys.get("auth"))
        if secret is None or len(secret) != 16:
            p.add("keys.auth", "must be the 16-byte authentication secret, base64url")
    p.raise_if_any()
    assert isinstance(keys, dict) and isinstance(endpoint, str)
    return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}


class Subscriptions:
    """Each officer's live subscriptions, kept in step with the store (and rebuilt from it on start)."""

    def __init__(self, store: StoreProtocol) -> None:
        self.store = store
        self._by_officer: dict[str, set[str]] = defaultdict(set)
        store.on_apply(self._on_apply, {SUBSCRIPTIONS})
        store.unique_index(SUBSCRIPTIONS, "endpoint", lambda d: None if d.get("ended") else d["endpoint"])

    def _on_apply(self, coll: str, old: Doc | None, new: Doc) -> None:
        if old is not None:
            self._by_officer[old["officer"]["id"]].discard(old["id"])
        if not new.get("ended"):
            self._by_officer[new["officer"]["id"]].add(new["id"])

    def of(self, officer_id: str) -> Iterator[Doc]:
        for sub_id in self._by_officer.get(officer_id, ()):
            doc = self.store.get(SUBSCRIPTIONS, sub_id)
            if doc is not None and not doc.get("ended"):
                yield doc

    async def subscribe(self, viewer: Viewer, inp: Doc, allow_insecure: bool) -> Doc:
        try:
            await check_endpoint(inp["endpoint"], allow_insecure)  # resolves the host: its addresses must be public
        except EndpointRefused as exc:
            raise ValidationFailed.one("endpoint", str(exc)) from None
        # From here on nothing is awaited until the append: two posts of one endpoint make one subscription.
        officer = {"id": viewer.id, "callsign": viewer.callsign}
        old = self.store.get_by(SUBSCRIPTIONS, "endpoint", inp["endpoint"])
        if old is not None and old["officer"] == officer and old["keys"] == inp["keys"]:
            return old
        now = now_str()
        doc = ({**old, "officer": officer, "keys": inp["keys"], "updated_at": now} if old is not None else
               {"id": new_id("psub"), "officer": officer, "endpoint": inp["endpoint"], "keys": inp["keys"],
                "created_at": now})
        mine = sorted((d for d in self.of(viewer.id) if d["id"] != doc["id"]), key=lambda d: (d["created_at"], d["seq"]))
        for oldest in mine[: max(0, len(mine) + 1 - MAX_PER_OFFICER)]:
            self.store.append_nowait("push-subscription", SUBSCRIPTIONS,
                                     {**oldest, "ended": {"at": now, "reason": "replaced by a newer handset"}})
        return await self.store.append("push-subscription", SUBSCRIPTIONS, doc)

    async def unsubscribe(self, viewer: Viewer, sub_id: str) -> None:
        doc = self.store.get(SUBSCRIPTIONS, sub_id)
        if doc is None or view(SUBSCRIPTIONS, doc, viewer) is None:  # its owner's only
            raise NotFound(f"No push subscription {sub_id}.")
        await self.end(doc, "deleted by its owner")

    async def end(self, doc: Doc, reason: str) -> None:
        await self.store.append("push-subscription", SUBSCRIPTIONS,
                                {**doc, "ended": {"at": now_str(), "reason": reason}})
