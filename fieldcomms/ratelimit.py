"""Per-client rate limiting: a token bucket per key, and the client address to key it by.

`TokenBucketLimiter` is plain Python with an injectable clock, so it is tested without sleeping. Memory is
bounded: a bucket that has been idle long enough to refill completely is indistinguishable from a new one, so it
is dropped; past `max_keys` buckets the least recently used go first (those clients get a fresh burst, which is
the least harmful way to degrade under a flood of distinct addresses).

`client_address` believes `X-Forwarded-For` only from a peer listed in `trusted_proxies`: anyone can send the
header, so from anyone else it would let a client pick its own key and escape the limit.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .errors import DatabaseUnavailable

if TYPE_CHECKING:
    from .store import StoreProtocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_ADDRESS = "unknown"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """`burst` requests at once, then `rate_per_s` on average, per key.

    `take(key)` spends one token and returns 0.0, or, when the bucket is empty, spends nothing and returns the
    seconds until a token will be there (for `Retry-After`).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
    ) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError("rate_per_s must be a positive, finite number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        # Seconds after its last use at which any bucket is full again, whatever it held.
        self._refill_s = self.burst / self.rate
        # Least recently used first: the front is where idle, full buckets collect.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        now = self.clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            # max(): a clock that steps back must not take tokens away.
            bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _sweep(self, now: float) -> None:
        """Drop buckets that are certainly full again. Amortised O(1): each bucket is dropped once."""
        buckets = self._buckets
        while buckets:
            key, oldest = next(iter(buckets.items()))
            if now - oldest.updated < self._refill_s and len(buckets) < self.max_keys:
                break
            del buckets[key]


class DeploymentLimiter:
    """A token bucket per key for the whole deployment, not per process: kept in the store when several workers
    share it (PostgreSQL: `StoreProtocol.take_token`, one bucket on the database's clock), else in this process
    (the embedded store serves one process, so its `TokenBucketLimiter` is the deployment's).

    `take(key)` answers as `TokenBucketLimiter.take`. While the database is unreachable it raises
    DatabaseUnavailable (503), or with `local_when_down` falls back to this process's bucket: a limit on reads
    (failed token checks) must not turn them into 503s when the writes are what the outage stops.
    """

    def __init__(self, store: StoreProtocol, prefix: str, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.local = TokenBucketLimiter(rate_per_s, burst, clock)
        self._store = store
        self._prefix = prefix
        self._burst = burst

    async def take(self, key: str, *, local_when_down: bool = False) -> float:
        try:
            wait = await self._store.take_token(self._prefix + key, self.local.rate, self._burst)
        except DatabaseUnavailable:
            if not local_when_down:
                raise
            wait = None
        return self.local.take(key) if wait is None else wait


def _networks(trusted: Iterable[str]) -> list[IPNetwork]:
    networks = []
    for entry in trusted:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # a typo in the configuration trusts nobody rather than everybody
    return networks


def parse_address(raw: str) -> IPAddress | None:
    """An address from a peer or an `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
    `2001:db8::1`. IPv4-mapped IPv6 is read as the IPv4 address it carries."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # a zone index ("fe80::1%eth0") names an interface, not a client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress | None, networks: list[IPNetwork]) -> bool:
    return address is not None and any(address.version == n.version and address in n for n in networks)


def client_address(request: web.Request, trusted_proxies: Iterable[str]) -> str:
    """The address of the client behind `request`, as a string.

    `X-Forwarded-For` is read only when the direct peer is a trusted proxy (`trusted_proxies` holds addresses or
    CIDR networks). Then the right-most entry that is not itself a trusted proxy is the client: entries to its
    left were written by the client and prove nothing. An unreadable entry there stops the walk and the last
    trusted hop is used instead.
    """
    peer_raw = request.remote
    peer = parse_address(peer_raw) if peer_raw else None
    networks = _networks(trusted_proxies)
    if peer is None:
        return peer_raw or UNKNOWN_ADDRESS
    if not _trusted(peer, networks):
        return str(peer)
    entries = [e for header in request.headers.getall("X-Forwarded-For", ()) for e in header.split(",")]
    client: IPAddress = peer
    for entry in reversed([e for e in entries if e.strip()]):
        address = parse_address(entry)
        if address is None:
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


def rate_key(address: str) -> str:
    """What to limit by: an IPv4 address, or an IPv6 address's /64, since one subscriber usually holds a whole
    /64 and could otherwise take a new address for every request."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address


def wide_rate_key(address: str) -> str | None:
    """The /48 an IPv6 address belongs to (a site's usual allocation, 65,536 /64s), or None for IPv4: a
    second, looser limit on it stops one site from spreading a flood over its /64s."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 48), strict=False))
    return None


class InFlight:
    """How many of something (photo downloads) each key has in progress, at most `per_key` at once."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def begin(self, key: str) -> bool:
        """Count one more for `key`, or answer False (and count nothing) when it has `per_key` already."""
        held = self._open.get(key, 0)
        if held >= self.per_key:
            return False
        self._open[key] = held + 1
        return True

    def end(self, key: str) -> None:
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)
