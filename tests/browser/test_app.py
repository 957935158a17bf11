"""The handset app in a real phone-sized Chromium: signing in by link, posting with the device's location and
photos, the outbox with no network, the service worker opening the app offline, a post whose answer is lost,
a refused post, an alert acknowledged, and axe-core's accessibility rules.

Each test gets a new browser profile (its own IndexedDB, service worker and storage), as a new phone would.
What the server stored is always checked through the API, not only what the page shows. Where /usr/bin/chromium
is missing these tests skip, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import calendar
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .live_server import Json, LiveServer, add_user, server_env
from .test_browser import (
    CHROMIUM,
    DOCS,
    WAIT_MS,
    Watched,
    launch,
    screenshot,
    serious_violations,
    unavailable,
    wait_until,
)

pytestmark = pytest.mark.browser

TAG = "handset2026"
BARKERS_POOL = {"lat": 53.3806, "lon": -1.4702}
PHONE = {"width": 390, "height": 844}
SAMPLE_PHOTO = Path("/work/shared/samples/photos/DSCN0010.jpg")
# What Chromium itself logs when a request gets no answer or an error status: expected where a test cuts the
# network or the server refuses on purpose; every other console error still fails the test.
NETWORK_NOISE = ("net::ERR_INTERNET_DISCONNECTED", "net::ERR_CONNECTION_RESET", "net::ERR_FAILED",
                 "net::ERR_NETWORK_CHANGED", "net::ERR_ABORTED")


def hook(name: str) -> str:
    return f"[data-test='{name}']"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests")
    root = tmp_path_factory.mktemp("handset")
    env = server_env(tile_url="", fsync="false", demo_admin="false", log_level="WARNING",
                     position_interval_s="5", base_url="http://127.0.0.1:1")
    data = root / "data"
    tokens = {"control": add_user(data, env, "CONTROL1", "control"),
              "alpha": add_user(data, env, "ALPHA1", "officer"),
              "bravo": add_user(data, env, "BRAVO2", "officer")}
    live = LiveServer(data, root / "server.log", env, tokens=tokens)
    live.start()
    live.ok("POST", "/api/v1/events", tokens["control"], {
        "tag": TAG, "title": "Handset trial, Barkers Pool", "status": "live"}, status=201)
    live.ok("POST", f"/api/v1/events/{TAG}/updates", tokens["bravo"], {
        "text": "Stewards in place along the route.", "visibility": "public", "location": BARKERS_POOL},
        status=201)
    yield live
    live.stop()


@pytest.fixture
def phone(playwright_api: Any, tmp_path: Path) -> Iterator[Any]:
    """A new phone: its own profile, a phone's screen and touch, and a position fix at Barkers Pool."""
    context = launch(playwright_api, tmp_path / "profile", viewport=PHONE, device_scale_factor=2,
                     is_mobile=True, has_touch=True, permissions=["geolocation"],
                     geolocation={"latitude": BARKERS_POOL["lat"], "longitude": BARKERS_POOL["lon"], "accuracy": 12})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


class Handset(Watched):
    def __init__(self, page: Any, allow: tuple[str, ...] = ()) -> None:
        super().__init__(page)
        self.allow = allow

    def assert_clean(self) -> None:
        errors = [e for e in self.errors if not any(a in e for a in self.allow)]
        assert not errors, "errors in the page:\n" + "\n".join(errors)


def open_app(phone: Any, server: LiveServer, token: str, allow: tuple[str, ...] = ()) -> Handset:
    page = phone.pages[0] if phone.pages else phone.new_page()
    handset = Handset(page, allow)
    page.goto(f"{server.url}/app#token={token}")
    wait_until(page, "() => window.fieldcomms.app.ready && window.fieldcomms.app.stream === 'live'")
    return handset


def updates_with(server: LiveServer, text: str) -> list[Json]:
    page = server.ok("GET", f"/api/v1/events/{TAG}/updates?limit=500", server.tokens["control"])
    return [u for u in page["items"] if u["text"] == text]


def post(page: Any, text: str, *, public: bool = False, kind: str = "info", files: list[Any] | None = None) -> None:
    page.locator(hook("text")).fill(text)
    page.locator(hook("kind")).select_option(kind)
    if public:
        page.locator(hook("public")).check()
    if files:
        page.locator(hook("photo")).set_input_files(files)
    page.locator("#post-status").evaluate("n => { n.textContent = ''; }")
    page.locator(hook("send")).click()
    page.locator("#post-status", has_text="kept on this phone").wait_for()  # in the outbox, on the disk


def outbox_count(page: Any) -> str:
    text: str = page.locator(hook("outbox-count")).inner_text()
    return text


def camera_photo(tmp_path: Path) -> Path:
    """A real camera JPEG from the shared samples where they are, else one drawn here (a clean checkout)."""
    if SAMPLE_PHOTO.is_file():
        return SAMPLE_PHOTO
    from PIL import Image

    path = tmp_path / "camera.jpg"
    Image.effect_noise((1024, 768), 50).convert("RGB").save(path, "JPEG", quality=85)
    return path


def test_sign_in_by_link_and_post_with_location_and_photo(app_server: LiveServer, phone: Any, tmp_path: Path) -> None:
    server = app_server
    handset = open_app(phone, server, server.tokens["alpha"])
    page = handset.page
    # The token left the address bar at once and stays on the phone.
    assert server.tokens["alpha"] not in page.url and page.url.endswith("/app")
    assert page.evaluate("localStorage.getItem('fc.token')") == server.tokens["alpha"]
    assert page.locator("#whoami").inner_text().startswith("ALPHA1")
    assert page.locator(hook("event")).input_value() == TAG
    # The feed: the update posted before the app opened.
    assert page.locator(f"{hook('feed')} > li").count() >= 1

    pressed = time.time()
    text = "Crowd building at the Barkers Pool stage, all calm."
    post(page, text, public=True, kind="warning", files=[str(camera_photo(tmp_path))])
    wait_until(page, "() => document.querySelector(\"[data-test='outbox-count']\").textContent === '0'")
    stored = wait_for_stored(server, text)
    assert stored["visibility"] == "public" and stored["kind"] == "warning"
    location = stored["location"]
    assert location["source"] == "device" and location["accuracy_m"] == pytest.approx(12)
    assert (location["lat"], location["lon"]) == pytest.approx((BARKERS_POOL["lat"], BARKERS_POOL["lon"]))
    assert len(stored["photos"]) == 1 and stored["photos"][0]["width"] > 0
    captured = calendar.timegm(time.strptime(stored["captured_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(captured - pressed) < 30
    # Back through the stream into the feed, with its photo fetched with the token.
    item = page.locator(f"{hook('feed')} > li[data-id='{stored['id']}']")
    item.wait_for()
    wait_until(page, "id => { const i = document.querySelector(`[data-id='${id}'] img`);"
                     " return i && i.complete && i.naturalWidth > 0; }", stored["id"])
    handset.assert_clean()


def wait_for_stored(server: LiveServer, text: str, timeout: float = 15.0) -> Json:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = updates_with(server, text)
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no update {text!r} on the server")


def test_offline_posts_wait_and_the_app_opens_from_its_service_worker(app_server: LiveServer, phone: Any) -> None:
    server = app_server
    handset = open_app(phone, server, server.tokens["alpha"], allow=NETWORK_NOISE)
    page = handset.page
    # The worker controls the page once it has cached the shell.
    wait_until(page, "() => navigator.serviceWorker.controller !== null")

    phone.set_offline(True)
    wait_until(page, "() => document.getElementById('net').dataset.state === 'offline'")
    text = "Written in the underpass with no signal."
    post(page, text)
    wait_until(page, "() => document.querySelector(\"[data-test='outbox-count']\").textContent === '1'")
    assert page.locator("#outbox-list > li").inner_text().startswith(text)
    assert "No connection" in page.locator("#outbox-state").inner_text()
    time.sleep(1)
    assert updates_with(server, text) == []
    made_at = time.time()

    # Closed and opened again with no network: the service worker serves the app, and the post is still there.
    response = page.reload()
    assert response is not None and response.from_service_worker
    assert page.evaluate("fetch('/healthz').then(() => 'reached', () => 'offline')") == 'offline'
    wait_until(page, "() => document.querySelector(\"[data-test='outbox-count']\").textContent === '1'")
    assert page.locator(f"{hook('feed')} > li").count() >= 1  # the feed this phone kept
    screenshot(page, "app-offline.png")

    time.sleep(2)
    phone.set_offline(False)
    wait_until(page, "() => document.querySelector(\"[data-test='outbox-count']\").textContent === '0'")
    stored = wait_for_stored(server, text)
    # captured_at is when send was pressed, offline, not when the server got it.
    captured = calendar.timegm(time.strptime(stored["captured_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert captured <= made_at + 1
    assert stored["received_at"] > stored["captured_at"]
    time.sleep(1)
    assert len(updates_with(server, text)) == 1
    handset.assert_clean()


def test_a_post_whose_answer_is_lost_is_stored_once(app_server: LiveServer, phone: Any) -> None:
    server = app_server
    handset = open_app(phone, server, server.tokens["alpha"], allow=NETWORK_NOISE)
    page = handset.page
    seen: list[tuple[str, int]] = []

    def lose_first_answer(route: Any) -> None:
        # The request reaches the server and is stored; the answer never reaches the handset.
        answer = route.fetch()
        key = route.request.headers.get("idempotency-key", "")
        seen.append((key, answer.status))
        if len(seen) == 1:
            route.abort("connectionreset")
        else:
            route.fulfill(response=answer)

    page.route(f"**/api/v1/events/{TAG}/updates", lose_first_answer)
    text = "Barrier moved at the corner of Division Street."
    post(page, text)
    wait_until(page, "() => document.querySelector(\"[data-test='outbox-count']\").textContent === '0'")
    page.unroute(f"**/api/v1/events/{TAG}/updates")
    assert len(seen) >= 2, seen
    assert seen[0][1] == 201 and {key for key, _ in seen} == {seen[0][0]}  # one key through every retry
    time.sleep(1)
    assert len(updates_with(server, text)) == 1
    handset.assert_clean()


def test_a_refused_post_lands_in_not_sent_with_the_reason(app_server: LiveServer, phone: Any, tmp_path: Path) -> None:
    server = app_server
    handset = open_app(phone, server, server.tokens["alpha"], allow=("status of 415",))
    page = handset.page
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("this is text, not a JPEG")
    text = "Photo of the damaged barrier."
    post(page, text, files=[str(not_a_photo)])
    refused = page.locator(f"{hook('not-sent')} > li")
    refused.wait_for()
    assert text in refused.inner_text()
    assert "Refused:" in refused.inner_text() and "JPEG" in refused.locator(".detail").inner_text()
    assert outbox_count(page) == "0"
    assert updates_with(server, text) == []
    assert serious_violations(page) == []

    # Signing out warns while a post is not sent; refusing the warning keeps everything.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#sign-out").click()
    page.wait_for_timeout(300)
    assert page.locator("#signed-in").is_visible() and refused.count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#sign-out").click()
    page.locator(hook("token")).wait_for()
    assert page.evaluate("localStorage.getItem('fc.token')") is None

    # Signing in again by pasting the token: nothing of the old session is left.
    page.locator(hook("token")).fill(server.tokens["alpha"])
    page.locator(hook("sign-in")).click()
    wait_until(page, "() => window.fieldcomms.app.ready")
    assert page.locator(f"{hook('not-sent')} > li").count() == 0
    handset.assert_clean()


def test_position_is_shared_and_an_alert_is_acknowledged(app_server: LiveServer, phone: Any) -> None:
    server = app_server
    t = server.tokens
    handset = open_app(phone, server, t["alpha"])
    page = handset.page
    page.locator(hook("share-position")).click()
    assert page.locator(hook("share-position")).get_attribute("aria-pressed") == "true"

    def alpha_position() -> Json | None:
        officers = server.ok("GET", f"/api/v1/events/{TAG}/officers", t["control"])["items"]
        return next((o for o in officers if o["officer"]["callsign"] == "ALPHA1"), None)

    deadline = time.monotonic() + 15
    while alpha_position() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first = alpha_position()
    assert first is not None and first["location"]["lat"] == pytest.approx(BARKERS_POOL["lat"])
    # Every position_interval_s (5 s here) while sharing is on.
    deadline = time.monotonic() + 15
    while (again := alpha_position()) is not None and again["at"] == first["at"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert again is not None and again["at"] > first["at"]

    alert = server.ok("POST", f"/api/v1/events/{TAG}/alerts", t["control"], {
        "text": "Crowd surge at the stage: check and report.", "location": BARKERS_POOL, "radius_m": 300},
        status=201)
    assert [r["callsign"] for r in alert["recipients"]] == ["ALPHA1"]
    shown = page.locator(f"{hook('alert')}[data-id='{alert['id']}']")
    shown.wait_for()
    assert "Crowd surge at the stage" in shown.inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    page.locator(hook("text")).fill("Two people hurt near the fountain, need first aid.")
    assert serious_violations(page) == []
    screenshot_path = screenshot(page, "app-phone.png")
    if os.environ.get("FIELDCOMMS_UPDATE_DOCS") == "1":
        shutil.copyfile(screenshot_path, DOCS / "app-phone.png")
    shown.locator(hook("ack")).click()
    shown = page.locator(f"{hook('alert')}[data-id='{alert['id']}']")
    shown.locator(".acked-note").wait_for()
    seen = server.ok("GET", f"/api/v1/alerts/{alert['id']}", t["control"])
    assert [a["callsign"] for a in seen["acks"]] == ["ALPHA1"]
    page.locator(hook("share-position")).click()
    assert page.locator(hook("share-position")).get_attribute("aria-pressed") == "false"
    handset.assert_clean()


# ---- accessibility -------------------------------------------------------------------------------------


def test_the_app_passes_axe(app_server: LiveServer, phone: Any, tmp_path: Path) -> None:
    server = app_server
    page = phone.new_page()
    handset = Handset(page)
    page.goto(f"{server.url}/app")
    page.locator(hook("token")).wait_for()
    assert serious_violations(page) == []
    page.locator(hook("token")).fill(server.tokens["bravo"])
    page.locator(hook("sign-in")).click()
    wait_until(page, "() => window.fieldcomms.app.ready && window.fieldcomms.app.stream === 'live'")
    assert serious_violations(page) == []
    handset.assert_clean()
