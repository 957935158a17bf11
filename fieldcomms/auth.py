"""Tokens (only their hashes are stored), roles, and the middleware that names the caller."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from .caller import CALLER
from .errors import Forbidden, Unauthorized
from .keys import SERVICES, VIEWER
from .model import new_id, now_str
from .store import StoreProtocol
from .visibility import Viewer

TOKEN_PREFIX = "fc_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force. A header's bytes
    # that are not UTF-8 reach us as surrogates: such a token is merely unknown, not an error.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def viewer_for_token(store: StoreProtocol, token: str, known: dict[str, Viewer] | None = None) -> Viewer | None:
    """The user a token belongs to, or None. `known` caches the answers by token hash (never the token);
    its owner empties it whenever a user changes."""
    digest = hash_token(token)
    if known is not None and (viewer := known.get(digest)) is not None:
        return viewer
    user = store.get_by("users", "token_hash", digest)
    if user is None or user.get("revoked") or not hmac.compare_digest(user["token_hash"], digest):
        return None
    viewer = Viewer(id=user["id"], callsign=user["callsign"], role=user["role"], name=user["name"])
    if known is not None and len(known) < 100_000:
        known[digest] = viewer
    return viewer


def make_user(name: str, callsign: str, role: str) -> tuple[dict[str, object], str]:
    token = new_token()
    doc = {"id": new_id("usr"), "name": name, "callsign": callsign, "role": role,
           "token_hash": hash_token(token), "revoked": False, "created_at": now_str()}
    return doc, token


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Sets request[VIEWER]: None for the public. A token that is sent must be valid, even on public
    routes: a handset whose token was revoked should learn so at once rather than see the public view."""
    token = bearer(request)
    viewer = None
    if token is not None:
        ctx = request.app[SERVICES]
        viewer = viewer_for_token(ctx.store, token, ctx.viewers)
        if viewer is None:
            # The limiter is asked only about tokens that failed: an address shared by many (venue Wi-Fi, a
            # carrier's NAT, a proxy) may be blocked for guessing, and a valid token behind it still works.
            ctx.auth_limiter.check(request)
            await ctx.auth_limiter.failed(request)
            raise Unauthorized("The token is unknown or has been revoked.")
    request[VIEWER] = viewer
    token_ctx = CALLER.set(viewer)
    try:
        return await handler(request)
    finally:
        CALLER.reset(token_ctx)


def require(request: web.Request, role: str) -> Viewer:
    viewer = request[VIEWER]
    if viewer is None:
        raise Unauthorized()
    if not viewer.at_least(role):
        raise Forbidden(f"This needs the {role} role; your token has {viewer.role}.")
    return viewer


def viewer_of(request: web.Request) -> Viewer | None:
    return request[VIEWER]
