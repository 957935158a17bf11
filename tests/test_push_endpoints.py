"""The push endpoint check (SSRF): with `push_allow_insecure_endpoints` off, only https:// URLs whose hosts
are public are accepted at subscription, and the sender checks again when it posts. Only literal addresses
and `localhost` are used: no external DNS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import auth
from pushservice import Handset, PushService, eventually

from fieldcomms.config import Settings
from fieldcomms.domain.subscriptions import SUBSCRIPTIONS
from fieldcomms.keys import SERVICES
from fieldcomms.push.endpoints import is_public
from fieldcomms.push.sender import PushJob, PushSender
from fieldcomms.push.vapid import VapidSigner, load_or_create

SUBS = "/api/v1/push/subscriptions"

REFUSED = [
    "https://127.0.0.1/push/x", "https://127.8.9.10/push/x", "https://[::1]/push/x", "https://localhost/push/x",
    "https://LOCALHOST./push/x", "https://push.localhost/push/x",
    "https://10.1.2.3/push/x", "https://172.16.0.1/push/x", "https://172.31.255.254/push/x",
    "https://192.168.1.1/push/x", "https://[fc00::1]/push/x", "https://[fd12:3456::1]/push/x",
    "https://169.254.169.254/latest/meta-data", "https://[fe80::1]/push/x",
    "https://224.0.0.1/push/x", "https://[ff02::1]/push/x", "https://0.0.0.0/push/x", "https://100.64.0.1/push/x",
    "https://[::ffff:127.0.0.1]/push/x", "https://[64:ff9b::a00:1]/push/x", "https://240.0.0.1/push/x",
    "http://8.8.8.8/push/x", "ftp://8.8.8.8/push/x", "file:///etc/passwd", "gopher://8.8.8.8/",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False)  # the setting off


@pytest.mark.parametrize("endpoint", REFUSED)
async def test_internal_and_non_https_endpoints_are_refused(
        client: TestClient, officer_token: str, endpoint: str) -> None:
    resp = await client.post(SUBS, json=Handset(endpoint).subscription(), headers=auth(officer_token))
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["endpoint"]
    assert client.app[SERVICES].store.count(SUBSCRIPTIONS) == 0


async def test_a_public_https_endpoint_is_accepted(client: TestClient, officer_token: str) -> None:
    resp = await client.post(SUBS, json=Handset("https://8.8.8.8/push/abc").subscription(),
                             headers=auth(officer_token))
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("10.0.0.1", False),
    ("172.16.5.4", False), ("192.168.0.1", False), ("169.254.1.1", False), ("fe80::1%eth0", False),
    ("fc00::1", False), ("::1", False), ("::", False), ("224.0.0.251", False), ("100.64.1.1", False),
    ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True), ("2002:0a00:0001::1", False), ("not an ip", False),
])
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    service = await PushService().start()
    yield service
    await service.stop()


async def test_the_sender_checks_again_when_it_posts(tmp_path: Path, pushes: PushService) -> None:
    """Subscriptions stored earlier (DNS has changed, or the setting was on then) are checked at every send:
    a literal loopback address, a name that resolves to loopback, and http are never posted to."""
    gone: list[Any] = []
    sender = PushSender(VapidSigner(load_or_create(tmp_path), "mailto:a@example.org"), allow_insecure=False,
                        concurrency=4, timeout_s=2, on_gone=lambda *a: gone.append(a))
    await sender.start()
    try:
        handset = Handset("")
        keys = handset.subscription()["keys"]
        endpoints = [f"https://127.0.0.1:{pushes.port}/push/a", f"https://localhost:{pushes.port}/push/b",
                     pushes.endpoint("c")]
        sender.submit([PushJob(f"s{i}", url, keys["p256dh"], keys["auth"], b"{}") for i, url in enumerate(endpoints)])
        await eventually(lambda: sender.refused + sender.failed == len(endpoints))
        await asyncio.sleep(0.2)
        assert pushes.received == [] and gone == [] and sender.sent == 0
        assert sender.refused >= 2  # the literal address and http; `localhost` fails in the resolver
    finally:
        await sender.stop()
