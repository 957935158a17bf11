"""A stand-in for a browser vendor's push service, and a handset's side of Web Push, for tests.

`PushService` is a real HTTP server on 127.0.0.1 that takes pushes (`POST /push/<name>`) and keeps them; a
name can be told to answer 410 (the handset unsubscribed). `Handset` holds what a browser makes when it
subscribes (a P-256 key pair and a 16-byte auth secret), gives the PushSubscription JSON, and decrypts what
it receives (RFC 8291, aes128gcm) with `http_ece`, independently of the server's code. `verify_vapid` checks
the `Authorization: vapid t=<JWT>, k=<key>` header (RFC 8292, ES256) with `cryptography` alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushService:
    received: list[Received] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # names answered with 410
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None

    async def start(self) -> PushService:
        app = web.Application()
        app.router.add_post("/push/{name}", self._take)
        self._arrived = asyncio.Condition()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}"

    async def _take(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.received.append(Received(name, dict(request.headers), await request.read()))
        assert self._arrived is not None
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(status=410 if name in self.gone else 201)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """The first `count` pushes received, waiting for them to arrive."""
        assert self._arrived is not None
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


class Handset:
    """A browser's push subscription: its keys are made here, so only this side can decrypt."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}

    def decrypt(self, body: bytes) -> Any:
        plain = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        return json.loads(plain)


def verify_vapid(authorization: str, public_key: str) -> dict[str, Any]:
    """The JWT's claims, once its ES256 signature checks out against `public_key` (base64url point)."""
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", authorization
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == public_key, "the header's key is not the one GET /push/key gives"
    header_b64, claims_b64, sig_b64 = parts["t"].split(".")
    header = json.loads(unb64url(header_b64))
    assert header["alg"] == "ES256", header
    sig = unb64url(sig_b64)
    assert len(sig) == 64, "ES256 signatures are r || s, 32 bytes each (RFC 7518)"
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
    key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    return claims


async def eventually(condition: Any, within: float = 5.0, step: float = 0.02) -> None:
    """Wait until `condition()` holds (what happens on another thread or loop has no event to await here)."""
    for _ in range(int(within / step) + 1):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"not true within {within}s")
