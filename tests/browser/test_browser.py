"""The pages in a real browser: Debian's Chromium driven by Playwright against a real `fieldcomms serve`.

Chromium runs headless with the flags that keep it off the network, on a new empty profile; the server has no
tile URL, so the maps draw on a blank background, as in a control room cut off from the internet. Every test
fails on any console error or uncaught exception in the page. Screenshots go to tests/artifacts/. With
FIELDCOMMS_UPDATE_DOCS=1 the control room's is also copied to docs/control-room.png, which the README shows
(not on every run: a test run must not change tracked files).

Where /usr/bin/chromium is missing these tests skip, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .live_server import Json, LiveServer, add_user, server_env

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS = REPO / "docs"
TAG = "sheffield2011"
WAIT_MS = 15_000

# Sheffield city centre, as at the 2011 Liberal Democrat conference.
BARKERS_POOL = {"lat": 53.3806, "lon": -1.4702}
DEVONSHIRE_GREEN = {"lat": 53.3788, "lon": -1.4786}
CITY_HALL = {"lat": 53.3810, "lon": -1.4712}
FARGATE = {"lat": 53.3815, "lon": -1.4675}
WEST_STREET = {"lat": 53.3804, "lon": -1.4772}
LEOPOLD_STREET = {"lat": 53.3817, "lon": -1.4742}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; in CI a skipped browser test is a failure (.ci/run installs Chromium)")
    pytest.skip(reason)


# ---- the server and the world it serves ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests")
    root = tmp_path_factory.mktemp("browser")
    # No tiles: nothing leaves the machine, and the pages must work without them.
    env = server_env(tile_url="", fsync="false", demo_admin="false", log_level="WARNING",
                     report_rate_per_minute="1000", report_burst="1000")
    data = root / "data"
    tokens = {"control": add_user(data, env, "CONTROL1", "control"),
              "alpha": add_user(data, env, "ALPHA1", "officer"),
              "bravo": add_user(data, env, "BRAVO2", "officer")}
    live = LiveServer(data, root / "server.log", env, tokens=tokens)
    live.start()
    yield live
    live.stop()


def polygon(*corners: dict[str, float]) -> Json:
    ring = [[c["lon"], c["lat"]] for c in corners]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Json:
    """The event, seeded through the HTTP API as handsets and the control room would."""
    t = server.tokens
    server.ok("POST", "/api/v1/events", t["control"], {
        "tag": TAG, "title": "Liberal Democrat spring conference, Sheffield", "status": "live",
        "description": "Policing the march from Devonshire Green to Barkers Pool."}, status=201)
    base = f"/api/v1/events/{TAG}"

    def zone(name: str, kind: str, geometry: Json, visibility: str = "public") -> Json:
        feature: Json = server.ok("POST", f"{base}/zones", t["control"], {
            "type": "Feature", "geometry": geometry,
            "properties": {"name": name, "kind": kind, "visibility": visibility}}, status=201)
        return feature

    zones = [
        zone("Demonstration area, Barkers Pool", "demonstration-area", polygon(
            {"lat": 53.3799, "lon": -1.4714}, {"lat": 53.3799, "lon": -1.4690},
            {"lat": 53.3813, "lon": -1.4690}, {"lat": 53.3813, "lon": -1.4714})),
        zone("March route", "march-route", {"type": "LineString", "coordinates": [
            [-1.4786, 53.3788], [-1.4772, 53.3804], [-1.4740, 53.3806], [-1.4714, 53.3806]]}),
        zone("Cordon, City Hall steps", "cordon", polygon(
            {"lat": 53.3808, "lon": -1.4718}, {"lat": 53.3808, "lon": -1.4708},
            {"lat": 53.3812, "lon": -1.4708}, {"lat": 53.3812, "lon": -1.4718}), visibility="internal"),
    ]

    def update(token: str, text: str, **extra: Any) -> Json:
        body = {"text": text, **extra}
        posted: Json = server.ok("POST", f"{base}/updates", token, body, status=201)
        return posted

    photo = server.upload_photo(t["alpha"])
    public = [
        update(t["alpha"], "March route agreed: Devonshire Green to Barkers Pool. #libdempolicing",
               visibility="public", location=DEVONSHIRE_GREEN, photos=[photo["id"]]),
        update(t["bravo"], "Broken glass on West Street near the route; please keep to the pavement.",
               visibility="public", kind="warning", location=WEST_STREET),
        update(t["alpha"], "The march has reached Barkers Pool. Speeches start at 12:00.",
               visibility="public", location=BARKERS_POOL),
        update(t["bravo"], "Toilets and water at the Winter Garden.", visibility="public"),
    ]
    internal = update(t["alpha"], "INTERNAL-ONLY serials 12 and 14 to the City Hall steps.",
                      visibility="internal", kind="alert", location=CITY_HALL)
    roof_photo = server.upload_photo(t["alpha"], (120, 150, 190))
    snipers = server.ok("POST", f"{base}/rumours", t["alpha"], {
        "claim": "Police snipers on the roofs of City Hall", "location": CITY_HALL}, status=201)
    snipers = server.ok("POST", f"/api/v1/rumours/{snipers['id']}/rebuttals", t["alpha"], {
        "verdict": "false", "text": "Photo from the City Hall roof at 11:40: nobody there but pigeons.",
        "location": CITY_HALL, "photos": [roof_photo["id"]]}, status=201)
    kettle = server.ok("POST", f"{base}/rumours", t["bravo"], {
        "claim": "The demonstration area is a kettle: nobody can leave", "location": FARGATE}, status=201)
    now = datetime.now(UTC)
    server.ok("POST", f"{base}/positions", t["alpha"], {**BARKERS_POOL, "accuracy_m": 8}, status=204)
    stale_at = (now - timedelta(minutes=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    server.ok("POST", f"{base}/positions", t["bravo"], {**WEST_STREET, "at": stale_at}, status=204)
    server.ok("POST", f"{base}/reports", None, {
        "text": "People saying there are snipers on the City Hall roof", "location": CITY_HALL}, status=202)
    # The rebuttal's text went out as a public update of its own.
    public.append(server.ok("GET", f"/api/v1/updates/{snipers['rebuttals'][-1]['update_id']}"))
    return {"zones": zones, "public": public, "internal": internal, "snipers": snipers, "kettle": kettle,
            "photo": photo}


# ---- the browser ---------------------------------------------------------------------------------------


def launch(p: Any, profile: Path, **context: Any) -> Any:
    """A persistent context on a new, empty profile, never a downloaded browser."""
    profile.mkdir(parents=True)
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        viewport=context.pop("viewport", {"width": 1400, "height": 900}), **context)


@pytest.fixture(scope="module")
def browser_context(playwright_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = launch(playwright_api, tmp_path_factory.mktemp("chromium") / "profile")
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(f"console.{msg.type}: {msg.text} @ {msg.location}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def assert_clean(self) -> None:
        assert not self.errors, "errors in the page:\n" + "\n".join(self.errors)


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:
    page = browser_context.new_page()
    yield Watched(page)
    page.close()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def wait_until(page: Any, script: str, arg: Any = None) -> Any:
    return page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


# ---- the public feed -----------------------------------------------------------------------------------


def test_public_page_lists_updates_and_shows_new_ones_live(server: LiveServer, world: Json, watched: Watched) -> None:
    page, t = watched.page, server.tokens
    page.goto(f"{server.url}/events/{TAG}")
    items = page.locator("#updates > li.update")
    assert items.count() == len(world["public"])
    assert items.first.get_attribute("data-id") == world["public"][-1]["id"]  # newest first
    assert "INTERNAL-ONLY" not in page.content()
    assert page.locator("li.update.kind-warning .kind-badge").inner_text().strip().endswith("Warning")
    thumb = page.locator(f"li[data-id='{world['public'][0]['id']}'] .photos img")
    assert thumb.get_attribute("src") == world["photo"]["thumb_url"] and thumb.get_attribute("alt")
    # The map: the public zones (not the internal cordon) and one marker per located public update.
    located = sum(1 for u in world["public"] if u["location"])
    wait_until(page, "n => document.querySelectorAll('#map [data-layer=updates]').length === n", located)
    wait_until(page, "() => document.querySelectorAll('#map path[data-layer=zones]').length === 2")
    assert page.locator("#map .fc-update.kind-warning").count() == 1
    wait_until(page, "() => window.fieldcomms.publicPage.stream === 'open'")

    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    secret = server.ok("POST", f"/api/v1/events/{TAG}/updates", t["alpha"], {
        "text": "INTERNAL-LIVE-MARKER do not publish", "visibility": "internal"}, status=201)
    fresh = server.ok("POST", f"/api/v1/events/{TAG}/updates", t["bravo"], {
        "text": "Live: crowd dispersing calmly via Fargate <b>not bold</b>", "visibility": "public",
        "kind": "warning", "location": FARGATE}, status=201)
    item = page.locator(f"#updates > li[data-id='{fresh['id']}']")
    item.wait_for()
    assert page.locator("#updates > li.update").first.get_attribute("data-id") == fresh["id"]
    assert item.locator(".update-text").inner_text() == "Live: crowd dispersing calmly via Fargate <b>not bold</b>"
    assert item.locator("b").count() == 0  # text, not markup
    assert "kind-warning" in (item.get_attribute("class") or "")
    wait_until(page, "id => document.querySelector(`#map [data-layer=updates][data-id='${id}']`)", fresh["id"])
    assert page.evaluate("window.__sameDocument") is True
    assert "INTERNAL-LIVE-MARKER" not in page.content() and secret["id"] not in page.content()
    assert page.locator("#live-status").inner_text().startswith("New warning update")

    # A rumour answered while the page is open joins the verdicts.
    rumour = server.ok("POST", f"/api/v1/events/{TAG}/rumours", t["alpha"], {"claim": "Fargate is closed"}, status=201)
    server.ok("POST", f"/api/v1/rumours/{rumour['id']}/rebuttals", t["alpha"], {
        "verdict": "misleading", "text": "Fargate is open; only the top end is busy."}, status=201)
    verdict = page.locator(f"#verdicts li[data-rumour-id='{rumour['id']}']")
    verdict.wait_for()
    assert verdict.locator(".verdict").inner_text().lower() == "misleading"
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "public-feed.png", full_page=True)
    watched.assert_clean()


def test_a_retraction_disappears_live(server: LiveServer, world: Json, watched: Watched) -> None:
    page, t = watched.page, server.tokens
    page.goto(f"{server.url}/events/{TAG}")
    wait_until(page, "() => window.fieldcomms.publicPage.stream === 'open'")
    wrong = server.ok("POST", f"/api/v1/events/{TAG}/updates", t["alpha"], {
        "text": "Surrey Street closed (posted in error)", "visibility": "public", "location": FARGATE}, status=201)
    item = page.locator(f"#updates > li[data-id='{wrong['id']}']")
    item.wait_for()
    wait_until(page, "id => document.querySelector(`#map [data-id='${id}']`)", wrong["id"])
    server.ok("DELETE", f"/api/v1/updates/{wrong['id']}", t["alpha"])
    item.wait_for(state="detached")
    wait_until(page, "id => !document.querySelector(`#map [data-id='${id}']`)", wrong["id"])
    assert page.locator("#live-status").inner_text() == "An update was withdrawn."
    watched.assert_clean()


def test_public_page_is_readable_without_javascript(
    server: LiveServer, world: Json, playwright_api: Any, tmp_path: Path
) -> None:
    context = launch(playwright_api, tmp_path / "profile", java_script_enabled=False,
                     viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        watched = Watched(page)
        page.goto(f"{server.url}/events/{TAG}")
        texts = page.locator("#updates .update-text").all_inner_texts()
        assert world["public"][0]["text"] in texts
        assert page.locator(".map-fallback").is_visible()
        assert page.locator("#verdicts .verdict").first.is_visible()
        screenshot(page, "public-feed-phone-nojs.png", full_page=True)
        watched.assert_clean()
    finally:
        context.close()


# ---- the rumour board ----------------------------------------------------------------------------------


def test_rumour_board_renders_verdicts(server: LiveServer, world: Json, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{server.url}/events/{TAG}/rumours")
    snipers = world["snipers"]
    item = page.locator(f"#rumour-{snipers['id']}")
    assert item.locator(".claim").inner_text() == "\u201cPolice snipers on the roofs of City Hall\u201d"
    assert item.locator("strong.verdict").inner_text().lower() == "false"
    assert "nobody there but pigeons" in item.locator(".rebuttal-text").inner_text()
    img = item.locator(".rebuttal-photo img")
    assert img.get_attribute("alt") and img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert world["kettle"]["claim"] not in page.content()  # not answered: not on the board
    reviews = [json.loads(s) for s in page.locator("script[type='application/ld+json']").all_text_contents()]
    assert {r["claimReviewed"]: r["reviewRating"]["alternateName"] for r in reviews}[snipers["claim"]] == "False"
    screenshot(page, "rumour-board.png", full_page=True)
    watched.assert_clean()


# ---- the control room ------------------------------------------------------------------------------------


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/control/{TAG}")
    page.locator("#token").fill(server.tokens["control"])
    page.get_by_role("button", name="Open the control room").click()
    wait_until(page, "() => window.fieldcomms.control.ready && window.fieldcomms.control.stream === 'open'")


def layer_counts(page: Any) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate("window.fieldcomms.control.layerCounts()")
    return counts


def test_control_room_draws_every_layer_live(server: LiveServer, world: Json, watched: Watched) -> None:
    page, t = watched.page, server.tokens
    sign_in(page, server)
    # The token is in this tab's sessionStorage only: not in localStorage, a cookie or the URL.
    assert page.evaluate("sessionStorage.getItem('fieldcomms.token')") == t["control"]
    assert page.evaluate("localStorage.length") == 0 and not page.context.cookies()
    assert t["control"] not in page.url

    wait_until(page, """() => { const c = window.fieldcomms.control.layerCounts();
        return c.updates >= 5 && c.rumours >= 2 && c.zones === 3 && c.officers === 2; }""")
    # Each layer is on the map as elements a person (and this test) can find.
    internal = world["internal"]
    assert page.locator(f"#map [data-layer=updates][data-id='{internal['id']}'].kind-alert").count() == 1
    assert page.locator("#map [data-layer=rumours][data-status=false]").count() >= 1
    assert page.locator("#map [data-layer=rumours][data-status=unverified]").count() >= 1
    assert page.locator("#map path[data-layer=zones]").count() == 3
    assert page.locator("#map [data-layer=officers]").count() == 2
    assert page.locator("#map [data-layer=officers][data-callsign=BRAVO2]").get_attribute("data-stale") == "true"
    assert page.locator("#map [data-layer=officers][data-callsign=ALPHA1]").get_attribute("data-stale") == "false"

    # The rumour queue (by urgency) and the newest reports with their matches.
    queue = page.locator("#rumour-queue > li")
    queue.first.wait_for()
    assert {queue.nth(i).get_attribute("data-rumour-id") for i in range(queue.count())} >= {
        world["snipers"]["id"], world["kettle"]["id"]}
    report = page.locator("#reports > li").first
    report.wait_for()
    assert "snipers" in report.inner_text() and "Police snipers on the roofs" in report.locator(".match").first.inner_text()

    # An alert: click the map to place it, choose a radius, send it to the officers near ALPHA1.
    page.locator("#map").click(position={"x": 200, "y": 200})
    assert page.locator("#alert-lat").input_value() and page.locator("#alert-lon").input_value()
    page.locator("#alert-lat").fill(str(BARKERS_POOL["lat"]))
    page.locator("#alert-lon").fill(str(BARKERS_POOL["lon"]))
    page.locator("#alert-radius").fill("250")
    page.locator("#alert-text").fill("Crowd surge reported at the Barkers Pool stage: check and report.")
    page.get_by_role("button", name="Send alert").click()
    page.locator("#alert-result", has_text="Alert sent to 1 officer: ALPHA1").wait_for()
    wait_until(page, "() => window.fieldcomms.control.layerCounts().alerts === 1")
    assert page.locator("#map path[data-layer=alerts]").count() == 1

    # Live: an officer moves; a new update, a zone, a rumour status, a retraction arrive without a reload.
    page.evaluate("window.__sameDocument = true")
    before = page.evaluate("window.fieldcomms.control.officerLatLng('ALPHA1')")
    assert before["lat"] == pytest.approx(BARKERS_POOL["lat"]) and before["lon"] == pytest.approx(BARKERS_POOL["lon"])
    server.ok("POST", f"/api/v1/events/{TAG}/positions", t["alpha"], LEOPOLD_STREET, status=204)
    wait_until(page, """p => { const o = window.fieldcomms.control.officerLatLng('ALPHA1');
        return Math.abs(o.lat - p.lat) < 1e-6 && Math.abs(o.lon - p.lon) < 1e-6; }""", LEOPOLD_STREET)
    assert page.locator("#map [data-layer=officers]").count() == 2  # moved, not duplicated

    new = server.ok("POST", f"/api/v1/events/{TAG}/updates", t["bravo"], {
        "text": "Small group heading to Division Street", "visibility": "internal", "location": WEST_STREET}, status=201)
    page.locator(f"#map [data-layer=updates][data-id='{new['id']}']").wait_for()
    server.ok("DELETE", f"/api/v1/updates/{new['id']}", t["bravo"])
    page.locator(f"#map [data-layer=updates][data-id='{new['id']}']").wait_for(state="detached")
    rendezvous = server.ok("POST", f"/api/v1/events/{TAG}/zones", t["control"], {
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.4676, 53.3817]},
        "properties": {"name": "Rendezvous point, Fargate", "kind": "rendezvous", "buffer_m": 30}}, status=201)
    page.locator(f"#map path[data-layer=zones][data-id='{rendezvous['id']}']").wait_for()
    assert server.request("DELETE", f"/api/v1/zones/{rendezvous['id']}", t["control"])[0] == 204
    page.locator(f"#map path[data-layer=zones][data-id='{rendezvous['id']}']").wait_for(state="detached")
    assert layer_counts(page)["zones"] == 3
    server.ok("PATCH", f"/api/v1/rumours/{world['kettle']['id']}", t["control"], {"status": "investigating"})
    page.locator(f"#map [data-layer=rumours][data-id='{world['kettle']['id']}'][data-status=investigating]").wait_for()
    page.locator(f"#rumour-queue > li[data-rumour-id='{world['kettle']['id']}'][data-status=investigating]").wait_for()
    assert page.evaluate("window.__sameDocument") is True

    page.keyboard.press("Escape")
    page.wait_for_timeout(300)  # let the map settle before the picture
    path = screenshot(page, "control-room.png")
    if os.environ.get("FIELDCOMMS_UPDATE_DOCS") == "1":
        shutil.copyfile(path, DOCS / "control-room.png")
    watched.assert_clean()


def test_control_room_refuses_an_officer_token(server: LiveServer, world: Json, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{server.url}/control/{TAG}")
    page.locator("#token").fill(server.tokens["alpha"])
    page.get_by_role("button", name="Open the control room").click()
    page.locator("#login-error", has_text="needs a control token").wait_for()
    assert page.locator("#control").is_hidden()
    assert page.evaluate("sessionStorage.getItem('fieldcomms.token')") is None
    watched.assert_clean()


def test_control_room_alerts_panel_shows_who_acknowledged_and_who_is_overdue(
        server: LiveServer, world: Json, watched: Watched) -> None:
    """An alert that stays live and wants acknowledgement within 30 s: the panel shows its recipients, an
    officer who walks in later, an acknowledgement, and the one reported overdue, all live, no reload."""
    page, t = watched.page, server.tokens
    base = f"/api/v1/events/{TAG}"
    server.ok("POST", f"{base}/positions", t["alpha"], FARGATE, status=204)
    sign_in(page, server)
    page.evaluate("window.__sameDocument = true")
    sent = server.ok("POST", f"{base}/alerts", t["control"], {
        "text": "Check the Fargate entrance and acknowledge.", "location": FARGATE, "radius_m": 60,
        "active_minutes": 10, "ack_within_s": 30}, status=201)
    assert [r["callsign"] for r in sent["recipients"]] == ["ALPHA1"]
    item = page.locator(f"[data-test=alerts-panel] li[data-alert-id='{sent['id']}']")
    item.locator("li[data-callsign=ALPHA1][data-state=waiting]").wait_for()

    server.ok("POST", f"{base}/positions", t["bravo"], FARGATE, status=204)  # walks into the live alert
    item.locator("li[data-callsign=BRAVO2][data-state=waiting]", has_text="walked in").wait_for()
    server.ok("POST", f"/api/v1/alerts/{sent['id']}/ack", t["alpha"], status=204)
    item.locator("li[data-callsign=ALPHA1][data-state=acked]", has_text="acknowledged").wait_for()
    assert "2 recipients \u00b7 1 acknowledged" in item.locator("[data-test=alert-summary]").inner_text()

    # BRAVO2 does not acknowledge: 30 s after walking in, control is told, once.
    item.locator("li[data-callsign=BRAVO2][data-state=overdue]", has_text="OVERDUE").wait_for(timeout=45_000)
    assert "1 overdue" in item.locator("[data-test=alert-summary]").inner_text()
    assert page.evaluate("id => window.fieldcomms.controlAlerts.states(id)", sent["id"]) == {
        "ALPHA1": "acked", "BRAVO2": "overdue"}
    stored = server.ok("GET", f"/api/v1/alerts/{sent['id']}", t["control"])
    assert {r["callsign"]: bool(r.get("overdue")) for r in stored["recipients"]} == {"ALPHA1": False, "BRAVO2": True}
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "control-alerts.png")
    watched.assert_clean()


# ---- clusters ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowded_server(tmp_path_factory: pytest.TempPathFactory, server: LiveServer) -> Iterator[LiveServer]:
    """A second server that clusters any layer with more than 5 points in view, holding 40 public updates."""
    root = tmp_path_factory.mktemp("crowded")
    env = server_env(tile_url="", fsync="false", demo_admin="false", log_level="WARNING", cluster_above="5")
    tokens = {"control": add_user(root / "data", env, "CONTROL1", "control"),
              "alpha": add_user(root / "data", env, "ALPHA1", "officer")}
    live = LiveServer(root / "data", root / "server.log", env, tokens=tokens)
    live.start()
    live.ok("POST", "/api/v1/events", tokens["control"], {"tag": TAG, "title": "Crowded", "status": "live"}, status=201)
    for i in range(40):
        where = {"lat": 53.3790 + (i % 8) * 0.0004, "lon": -1.4760 + (i // 8) * 0.0006}
        live.ok("POST", f"/api/v1/events/{TAG}/updates", tokens["alpha"], {
            "text": f"Steward point {i}", "visibility": "public", "location": where}, status=201)
    yield live
    live.stop()


SHOWN_UPDATES = """() => {
    const clustered = [...document.querySelectorAll('#map .fc-cluster[data-of=updates]')]
        .reduce((n, c) => n + Number(c.dataset.count), 0);
    return {clusters: document.querySelectorAll('#map .fc-cluster[data-of=updates]').length,
            single: document.querySelectorAll('#map .fc-update[data-layer=updates]').length, clustered};
}"""


def zoom_out(page: Any, times: int) -> None:
    for _ in range(times):
        page.locator(".leaflet-control-zoom-out").click()
        page.wait_for_timeout(350)


def test_maps_cluster_when_zoomed_out(crowded_server: LiveServer, watched: Watched) -> None:
    page, server = watched.page, crowded_server
    map_requests: list[str] = []
    page.on("request", lambda r: map_requests.append(r.url) if "/map?" in r.url else None)
    sign_in(page, server)
    zoom_out(page, 4)
    wait_until(page, f"""() => {{ const s = ({SHOWN_UPDATES})();
        return s.clusters >= 1 && s.clustered + s.single === 40 && s.clustered > s.single; }}""")
    assert any("zoom=" in url and "bbox=" in url for url in map_requests), map_requests
    shown = page.evaluate(SHOWN_UPDATES)
    screenshot(page, "control-room-clusters.png")
    # A cluster opens on a click: the map zooms to its box and shows what it held.
    biggest = max(int(c) for c in page.locator("#map .fc-cluster[data-of=updates]").evaluate_all(
        "cs => cs.map(c => c.dataset.count)"))
    page.locator(f"#map .fc-cluster[data-of=updates][data-count='{biggest}']").first.click()
    wait_until(page, f"n => ({SHOWN_UPDATES})().single > n", shown["single"])

    public = watched.page.context.new_page()
    checked = Watched(public)
    public.goto(f"{server.url}/events/{TAG}")
    wait_until(public, f"() => ({SHOWN_UPDATES})().clustered + ({SHOWN_UPDATES})().single === 40")
    public.locator(".leaflet-control-zoom-out").click()
    wait_until(public, f"() => ({SHOWN_UPDATES})().clusters >= 1")
    screenshot(public, "public-feed-clusters.png")
    public.close()
    checked.assert_clean()
    watched.assert_clean()


# ---- accessibility -------------------------------------------------------------------------------------


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (axe.js ships with the package)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_pages_pass_axe(server: LiveServer, world: Json, watched: Watched, viewport: dict[str, int]) -> None:
    page = watched.page
    page.set_viewport_size(viewport)
    for url in (f"/events/{TAG}", f"/events/{TAG}/rumours"):
        page.goto(server.url + url)
        if url == f"/events/{TAG}":
            wait_until(page, "() => window.fieldcomms.publicPage.stream === 'open'")
        assert serious_violations(page) == [], url
    page.goto(f"{server.url}/control/{TAG}")
    page.locator("#token").wait_for()
    assert serious_violations(page) == [], "the control room's sign-in"
    sign_in(page, server)
    wait_until(page, "() => window.fieldcomms.control.layerCounts().zones === 3")
    page.locator("#reports > li").first.wait_for()
    assert serious_violations(page) == [], "the control room"


def test_zone_names_and_alert_texts_are_text_in_map_tooltips(server: LiveServer, watched: Watched) -> None:
    """Issue 15 item 10: a zone name or an alert text holding markup is shown as text, never made into HTML."""
    page, t = watched.page, server.tokens
    tag = "tooltips2026"
    server.ok("POST", "/api/v1/events", t["control"], {"tag": tag, "title": "Markup in names", "status": "live"},
              status=201)
    server.ok("POST", f"/api/v1/events/{tag}/zones", t["control"], {
        "type": "Feature", "geometry": polygon(
            {"lat": 53.3799, "lon": -1.4714}, {"lat": 53.3799, "lon": -1.4690},
            {"lat": 53.3813, "lon": -1.4690}, {"lat": 53.3813, "lon": -1.4714}),
        "properties": {"name": '<img src=x onerror="window.__pwned=1">Rally point', "kind": "rendezvous",
                       "visibility": "public"}}, status=201)
    server.ok("POST", f"/api/v1/events/{tag}/alerts", t["control"], {
        # Just west of the zone, where the map opens, and not under it (zones are drawn above alerts).
        "text": '<b id="injected">Crowd surge</b>', "location": {"lat": 53.3806, "lon": -1.4719},
        "radius_m": 15}, status=201)
    page.goto(f"{server.url}/control/{tag}")
    page.locator("#token").fill(t["control"])
    page.get_by_role("button", name="Open the control room").click()
    wait_until(page, "() => window.fieldcomms.control.ready && window.fieldcomms.control.layerCounts().alerts === 1")
    for layer, shown in (("zones", '<img src=x onerror="window.__pwned=1">Rally point'),
                         ("alerts", '<b id="injected">Crowd surge</b>')):
        page.locator(f"#map path[data-layer={layer}]").first.hover()
        tooltip = page.locator(".leaflet-tooltip", has_text=shown[-11:]).last
        tooltip.wait_for()
        assert shown in tooltip.inner_text()
        assert tooltip.locator("img, b").count() == 0
        page.mouse.move(5, 5)
    assert page.evaluate("window.__pwned") is None
    public = watched.page.context.new_page()
    public.goto(f"{server.url}/events/{tag}")
    public.locator("#map path[data-layer=zones]").first.hover()
    tooltip = public.locator(".leaflet-tooltip", has_text="Rally point").last
    tooltip.wait_for()
    assert tooltip.locator("img").count() == 0 and public.evaluate("window.__pwned") is None
    public.close()
    watched.assert_clean()
