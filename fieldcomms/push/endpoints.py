"""Where a push may go: an `https://` URL whose host resolves only to public addresses.

A push endpoint is a URL chosen by whoever holds an officer token, and the server POSTs to it: without this
check the server would be a way to reach hosts inside the control room's network (SSRF). The check runs when
a subscription is made and again at every send, because DNS can change in between: at send time it runs in
the resolver the connection itself uses (see `sender.PublicResolver`), so the address checked is the address
connected to. `push_allow_insecure_endpoints` lifts it for tests that run a push service on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_S = 5.0
# Addresses that carry an IPv4 address inside an IPv6 one reach that IPv4 host: judge the embedded one too.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EndpointRefused(ValueError):
    """The endpoint is not one the server may post to; the message says why, for the caller."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address: not loopback, private (10/8, 172.16/12, 192.168/16,
    fc00::/7), link-local (169.254/16, fe80::/10), multicast, shared (100.64/10), reserved or unspecified."""
    if isinstance(address, str):
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
        except ValueError:
            return False
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return is_public(inner)  # the IPv4 host it reaches is what counts
    return bool(ip.is_global and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
                                      or ip.is_reserved or ip.is_unspecified))


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def parse_endpoint(url: object, allow_insecure: bool) -> SplitResult:
    """The endpoint split into parts, or EndpointRefused saying what is wrong with its form."""
    if not isinstance(url, str) or not url:
        raise EndpointRefused("is required: the push service URL from the browser's PushSubscription")
    if len(url) > MAX_URL_CHARS:
        raise EndpointRefused(f"is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointRefused("is not a URL") from None
    schemes = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme.lower() not in schemes:
        raise EndpointRefused("must be an https:// URL" if parts.scheme else "is not a URL")
    if not parts.hostname:
        raise EndpointRefused("is not a URL: it names no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("must not carry a user name or password")
    if port == 0:
        raise EndpointRefused("has no usable port")
    if any(c.isspace() for c in url):
        raise EndpointRefused("is not a URL: it contains white space")
    return parts


async def check_endpoint(url: object, allow_insecure: bool) -> str:
    """The endpoint, if the server may post to it now: its form, then every address its host resolves to.
    Raises EndpointRefused otherwise."""
    parts = parse_endpoint(url, allow_insecure)
    assert isinstance(url, str)
    if not allow_insecure:
        await public_addresses(parts.hostname or "", parts.port or 443)
    return url


async def public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, all public, or EndpointRefused (naming the first that is not)."""
    ip = literal_ip(host)
    if ip is not None:
        if not is_public(ip):
            raise EndpointRefused(f"is on {ip}, which is not a public address")
        return [str(ip)]
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        raise EndpointRefused(f"is on {host}, which is not a public address")  # RFC 6761: always loopback
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        raise EndpointRefused(f"names a host that does not resolve: {host}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise EndpointRefused(f"names a host that does not resolve: {host}")
    for address in addresses:
        if not is_public(address):
            raise EndpointRefused(f"resolves to {address}, which is not a public address")
    return addresses
