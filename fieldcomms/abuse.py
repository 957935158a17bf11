"""Slowing token guessing: failed token checks are rate-limited per client address.

A client address that spends its failure budget is refused with 429 before its token is even looked
up, until the bucket refills; valid tokens from other addresses are unaffected. The budget is the
deployment's (`DeploymentLimiter`: shared by every worker on PostgreSQL), so guesses spread over workers add
up; each worker remembers the addresses it found out of budget, so a blocked guesser costs no database call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from .errors import TooManyRequests
from .ratelimit import DeploymentLimiter, client_address
from .store import StoreProtocol

routes = web.RouteTableDef()
OPENAPI: dict[str, object] = {}


class AuthFailureLimiter:
    def __init__(self, store: StoreProtocol, per_minute: float, trusted_proxies: list[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        burst = max(1, int(per_minute))
        self._bucket = DeploymentLimiter(store, "auth:", per_minute / 60.0, burst, clock)
        self._blocked_until: dict[str, float] = {}
        self._trusted = trusted_proxies
        self._clock = clock

    def check(self, request: web.Request) -> None:
        if not self._blocked_until:  # the usual case: no address has spent its budget
            return
        address = client_address(request, self._trusted)
        until = self._blocked_until.get(address)
        if until is None:
            return
        wait = until - self._clock()
        if wait > 0:
            raise TooManyRequests("Too many failed token checks from this address; wait and try again.", wait)
        del self._blocked_until[address]

    async def failed(self, request: web.Request) -> None:
        address = client_address(request, self._trusted)
        wait = await self._bucket.take(address, local_when_down=True)
        if wait > 0:
            if len(self._blocked_until) > 100_000:  # bounded memory under a flood of addresses
                now = self._clock()
                self._blocked_until = {a: u for a, u in self._blocked_until.items() if u > now}
            self._blocked_until[address] = self._clock() + wait
