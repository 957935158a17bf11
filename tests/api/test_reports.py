"""Reports from the public through the HTTP API: who may send and read them, `contact` for control only,
validation, idempotency, and the per-address rate limit (with `X-Forwarded-For` believed only from trusted
proxies). The limiter and the client-address rule are also tested on their own, with a fake clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request
from answer import ok, problem

from fieldcomms import auth as auth_module
from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES
from fieldcomms.ratelimit import TokenBucketLimiter, client_address, rate_key

TAG = "libdempolicing"
REPORTS = f"/api/v1/events/{TAG}/reports"
BURST = 3

Json = dict[str, Any]


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared settings, with a small burst so the limit is reached quickly."""
    return Settings(data_dir=str(tmp_path / "data"), fsync=True, demo_admin=False, report_burst=BURST,
                    report_rate_per_minute=6.0)


def report(n: int = 0) -> Json:
    return {"text": f"heard they'll let off flares on Fargate later ({n})"}


async def send(client: TestClient, body: Json | None = None, forwarded: str | None = None,
               key: str | None = None) -> Any:
    headers = {}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(REPORTS, json=body or report(), headers=headers)


async def proxied_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, trusted: list[str]
) -> TestClient:
    """An app behind a proxy at `trusted` (the test client connects from 127.0.0.1), with the event."""
    settings = Settings(data_dir=str(tmp_path / "proxied"), fsync=False, demo_admin=False, report_burst=BURST,
                        report_rate_per_minute=6.0, trusted_proxies=trusted)
    client = await aiohttp_client(create_app(settings))
    doc, token = auth_module.make_user("Control", "control9", "control")
    await client.app[SERVICES].store.append("user", "users", doc)
    await ok(await client.post("/api/v1/events", json={"tag": TAG, "title": "Conference", "status": "live"},
                               headers=auth(token)), 201)
    return client


# --- sending and reading ------------------------------------------------------------------------------------


async def test_anyone_may_report_and_only_officers_read_with_contact_for_control_only(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    sent = await ok(await client.post(REPORTS, json={
        "text": "  heard there are snipers on the roofs  ", "location": {"lat": 53.3811, "lon": -1.4701},
        "contact": "jo@example.org"}), 202)
    assert set(sent) == {"id"}

    await problem(await client.get(REPORTS), 401)
    officer_view = await ok(await client.get(REPORTS, headers=auth(officer_token)))
    [item] = officer_view["items"]
    assert item["id"] == sent["id"] and item["event"] == TAG
    assert item["text"] == "heard there are snipers on the roofs"
    assert item["location"] == {"lat": 53.3811, "lon": -1.4701, "source": "device"}
    assert item["counted_for"] == [] and item["matches"] == [] and isinstance(item["seq"], int)
    assert "contact" not in item and "jo@example.org" not in str(officer_view)
    control_view = await ok(await client.get(REPORTS, headers=auth(control_token)))
    assert control_view["items"][0]["contact"] == "jo@example.org"
    # Nothing about the sender's address is kept.
    assert "127.0.0.1" not in str(client.app[SERVICES].store.get("reports", sent["id"]))
    # The public's copy of a report never exists, on any surface.
    assert (await client.get(f"{REPORTS}?since=0")).status == 401


async def test_reports_are_listed_newest_first_and_paged(client: TestClient, officer_token: str, event: Json) -> None:
    sent = [(await ok(await send(client, report(n)), 202))["id"] for n in range(3)]
    listed = await ok(await client.get(REPORTS, headers=auth(officer_token)))
    assert [r["id"] for r in listed["items"]] == sent[::-1]
    oldest = await ok(await client.get(f"{REPORTS}?since=0&limit=2", headers=auth(officer_token)))
    assert [r["id"] for r in oldest["items"]] == sent[:2]
    rest = await ok(await client.get(f"{REPORTS}?since={oldest['last_seq']}", headers=auth(officer_token)))
    assert [r["id"] for r in rest["items"]] == sent[2:]
    await problem(await client.get("/api/v1/events/nosuchevent/reports", headers=auth(officer_token)), 404)


async def test_matches_name_only_rumours_of_the_same_event(
    client: TestClient, officer_token: str, control_token: str, event: Json
) -> None:
    await ok(await client.post("/api/v1/events", json={"tag": "otherevent", "title": "Other", "status": "live"},
                               headers=auth(control_token)), 201)
    here = await ok(await client.post(f"/api/v1/events/{TAG}/rumours", headers=auth(officer_token),
                                      json={"claim": "Protesters are planning to set off flares on Fargate"}), 201)
    await ok(await client.post("/api/v1/events/otherevent/rumours", headers=auth(officer_token),
                               json={"claim": "Protesters are planning to set off flares on Fargate"}), 201)
    await ok(await send(client), 202)
    [item] = (await ok(await client.get(REPORTS, headers=auth(officer_token))))["items"]
    assert [m["rumour_id"] for m in item["matches"]] == [here["id"]]


@pytest.mark.parametrize(("body", "expected"), [
    ({}, {"text"}),
    ({"text": "   "}, {"text"}),
    ({"text": "x" * 2001}, {"text"}),
    ({"text": ["flares"]}, {"text"}),
    ({"text": "flares", "contact": "c" * 201}, {"contact"}),
    ({"text": "flares", "contact": 7700900123}, {"contact"}),
    ({"text": "flares", "location": {"lat": 53.38, "lon": 181}}, {"location.lon"}),
    ({"text": "flares", "location": {"lat": 53.38, "lon": -1.47, "accuracy_m": -1}}, {"location.accuracy_m"}),
    ({"text": "flares", "name": "Jo"}, {"name"}),
    ({"text": "", "contact": 1, "location": "Fargate"}, {"text", "contact", "location"}),
])
async def test_reports_are_validated_field_by_field(
    client: TestClient, event: Json, body: Json, expected: set[str]
) -> None:
    body_ = await problem(await client.post(REPORTS, json=body), 422)
    assert {e["field"] for e in body_["errors"]} == expected


async def test_a_report_needs_an_open_event(client: TestClient, control_token: str, event: Json) -> None:
    await problem(await client.post("/api/v1/events/nosuchevent/reports", json=report()), 404)
    await ok(await client.patch(f"/api/v1/events/{TAG}", json={"status": "closed"}, headers=auth(control_token)))
    await problem(await send(client), 409)


async def test_report_create_honours_idempotency_keys(client: TestClient, officer_token: str, event: Json) -> None:
    first = await ok(await send(client, key="r-1"), 202)
    again = await ok(await send(client, key="r-1"), 202)
    assert first == again
    assert len((await ok(await client.get(REPORTS, headers=auth(officer_token))))["items"]) == 1
    body = await problem(await send(client, report(9), key="r-1"), 422)
    assert body["errors"][0]["field"] == "Idempotency-Key"


# --- the rate limit ------------------------------------------------------------------------------------------


async def test_a_burst_then_429_with_retry_after(client: TestClient, event: Json) -> None:
    for n in range(BURST):
        await ok(await send(client, report(n)), 202)
    resp = await send(client, report(99))
    body = await problem(resp, 429)
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 10  # one report per 10 s at 6 a minute
    assert "try again" in body["detail"]
    # Invalid bodies are refused by the limit too: flooding costs the same whatever is sent.
    await problem(await client.post(REPORTS, json={}), 429)


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(client: TestClient, event: Json) -> None:
    for n in range(BURST):
        await ok(await send(client, report(n), forwarded=f"198.51.100.{n}"), 202)
    # Claiming to be someone else does not escape the limit.
    await problem(await send(client, report(9), forwarded="203.0.113.77"), 429)


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await proxied_client(aiohttp_client, tmp_path, ["127.0.0.1"])
    for n in range(BURST):
        await ok(await send(client, report(n), forwarded="203.0.113.5"), 202)
    await problem(await send(client, report(9), forwarded="203.0.113.5"), 429)
    # A different address is not limited.
    await ok(await send(client, report(10), forwarded="203.0.113.6"), 202)
    # Entries the client wrote itself, left of what the proxy added, change nothing.
    await problem(await send(client, report(11), forwarded="192.0.2.1, 203.0.113.5"), 429)
    # A chain of trusted proxies is walked from the right.
    await problem(await send(client, report(12), forwarded="203.0.113.5, 127.0.0.1"), 429)
    # IPv6 clients are limited per /64.
    for n in range(BURST):
        await ok(await send(client, report(20 + n), forwarded=f"2001:db8:1:2::{n + 1}"), 202)
    await problem(await send(client, report(30), forwarded="2001:db8:1:2:ffff::9"), 429)
    await ok(await send(client, report(31), forwarded="2001:db8:1:3::1"), 202)


async def test_the_public_s_idempotency_keys_are_scoped_to_their_address(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await proxied_client(aiohttp_client, tmp_path, ["127.0.0.1/32"])
    first = await ok(await send(client, forwarded="203.0.113.5", key="k"), 202)
    other = await ok(await send(client, forwarded="203.0.113.6", key="k"), 202)
    assert first != other


# --- the limiter and the client address, on their own ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=0.1, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # another key has its own bucket
    clock.now += 4
    assert limiter.take("a") == pytest.approx(6.0)  # a refused request spends nothing
    clock.now += 6
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(10.0)
    clock.now += 1000
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # a long rest refills to the burst, not beyond


def test_a_clock_stepping_back_takes_no_tokens_away() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock)
    limiter.take("a")
    clock.now -= 100
    assert limiter.take("a") == 0.0


def test_idle_full_buckets_are_dropped_and_memory_is_capped() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=5, clock=clock, max_keys=100)
    for n in range(50):
        limiter.take(f"10.0.0.{n}")
    assert len(limiter) == 50
    clock.now += 5  # burst / rate: every one of them is full again
    limiter.take("10.0.1.1")
    assert len(limiter) == 1
    for n in range(1000):
        limiter.take(f"10.1.{n // 256}.{n % 256}")
    assert len(limiter) <= 100


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_the_limiter_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate, burst)


def request_from(peer: str, forwarded: str | None = None) -> Any:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return make_mocked_request("POST", "/", headers=headers).clone(remote=peer)


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("198.51.100.7", None, [], "198.51.100.7"),
    ("198.51.100.7", "203.0.113.1", [], "198.51.100.7"),
    ("198.51.100.7", "203.0.113.1", ["10.0.0.1"], "198.51.100.7"),
    ("10.0.0.1", "203.0.113.1", ["10.0.0.1"], "203.0.113.1"),
    ("10.0.0.1", "192.0.2.9, 203.0.113.1", ["10.0.0.1"], "203.0.113.1"),
    ("10.0.0.1", "203.0.113.1, 10.0.0.2", ["10.0.0.0/8"], "203.0.113.1"),
    ("10.0.0.1", "10.0.0.3, 10.0.0.2", ["10.0.0.0/8"], "10.0.0.3"),
    ("10.0.0.1", "garbage, 203.0.113.1", ["10.0.0.1"], "203.0.113.1"),
    ("10.0.0.1", "203.0.113.1, garbage", ["10.0.0.1"], "10.0.0.1"),
    ("10.0.0.1", "", ["10.0.0.1"], "10.0.0.1"),
    ("10.0.0.1", "203.0.113.1:4711", ["10.0.0.1"], "203.0.113.1"),
    ("10.0.0.1", "[2001:db8::1]:443", ["10.0.0.1"], "2001:db8::1"),
    ("::ffff:10.0.0.1", "203.0.113.1", ["10.0.0.1"], "203.0.113.1"),
    ("::1", "203.0.113.1", ["::1", "not an address"], "203.0.113.1"),
])
def test_client_address(peer: str, forwarded: str | None, trusted: list[str], expected: str) -> None:
    assert client_address(request_from(peer, forwarded), trusted) == expected


def test_several_forwarded_headers_read_as_one_list() -> None:
    request = make_mocked_request("POST", "/", headers=[("X-Forwarded-For", "192.0.2.9"),
                                                        ("X-Forwarded-For", "203.0.113.1")]).clone(remote="10.0.0.1")
    assert client_address(request, ["10.0.0.1"]) == "203.0.113.1"


def test_rate_keys() -> None:
    assert rate_key("203.0.113.1") == "203.0.113.1"
    assert rate_key("2001:db8:1:2::5") == rate_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert rate_key("unknown") == "unknown"
