"""Token guessing is slowed per address; other addresses and valid tokens (from any address) are not affected."""

from __future__ import annotations

from pathlib import Path

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from tests.conftest import auth, make_user


async def test_failed_tokens_are_rate_limited_per_address(aiohttp_client, tmp_path: Path):
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, auth_failures_per_minute=3,
                              trusted_proxies=["127.0.0.1"]))
    client = await aiohttp_client(app)
    good = await make_user(app, "officer", "o1")
    guesser = {"X-Forwarded-For": "203.0.113.9"}
    statuses = [(await client.get("/api/v1/me", headers={**auth(f"fc_guess{i}"), **guesser})).status
                for i in range(7)]
    # The budget of 3 is spent by the first three; the fourth failure finds it empty and blocks the address.
    assert statuses[:4] == [401, 401, 401, 401]
    assert statuses[4:] == [429, 429, 429]
    blocked = await client.get("/api/v1/me", headers={**auth("fc_guess_again"), **guesser})
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["Content-Type"].startswith("application/problem+json")
    # A valid token from the blocked address (an officer behind the same NAT) is never refused by it.
    assert (await client.get("/api/v1/me", headers={**auth(good), **guesser})).status == 200
    other = {"X-Forwarded-For": "198.51.100.7"}
    assert (await client.get("/api/v1/me", headers={**auth(good), **other})).status == 200
    assert (await client.get("/api/v1/me", headers={**auth("fc_wrong"), **other})).status == 401


async def test_limiter_refills_with_time(tmp_path: Path):
    from fieldcomms.abuse import AuthFailureLimiter
    from fieldcomms.errors import TooManyRequests
    from fieldcomms.store import Store

    class Req:
        remote = "192.0.2.1"
        headers: dict[str, str] = {}

    now = [0.0]
    limiter = AuthFailureLimiter(Store(tmp_path), 60, [], clock=lambda: now[0])  # one a second, burst 60
    for _ in range(60):
        limiter.check(Req())  # type: ignore[arg-type]
        await limiter.failed(Req())  # type: ignore[arg-type]
    await limiter.failed(Req())  # type: ignore[arg-type]
    try:
        limiter.check(Req())  # type: ignore[arg-type]
        raise AssertionError("expected 429")
    except TooManyRequests as exc:
        assert exc.status == 429
    now[0] += 1.5
    limiter.check(Req())  # type: ignore[arg-type]
