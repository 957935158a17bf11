"""The control room's answers waiting for approval, in Chromium against a real `fieldcomms serve`: listed first
with their checks, live; the proposer cannot approve; a second control user approves (confirming the flagged
check) or rejects in one click, and the public board follows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .live_server import Json, LiveServer, add_user, server_env
from .test_browser import (  # noqa: F401  (pytest fixtures, used by name)
    CHROMIUM,
    Watched,
    browser_context,
    screenshot,
    unavailable,
    wait_until,
    watched,
)

pytestmark = pytest.mark.browser
TAG = "approvals2026"


@pytest.fixture(scope="module")
def desk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests")
    root = tmp_path_factory.mktemp("desk")
    env = server_env(tile_url="", fsync="false", demo_admin="false", log_level="WARNING",
                     answer_approval="second-control")
    data = root / "data"
    tokens = {"control": add_user(data, env, "CONTROL1", "control"),
              "second": add_user(data, env, "SECOND2", "control"),
              "alpha": add_user(data, env, "ALPHA1", "officer")}
    live = LiveServer(data, root / "server.log", env, tokens=tokens)
    live.start()
    yield live
    live.stop()


def open_control(page: Any, server: LiveServer, who: str) -> None:
    if page.url.startswith(server.url):
        page.evaluate("sessionStorage.clear()")  # the tab keeps the last token: sign in afresh as `who`
    page.goto(f"{server.url}/control/{TAG}")
    page.locator("#token").fill(server.tokens[who])
    page.get_by_role("button", name="Open the control room").click()
    wait_until(page, "() => window.fieldcomms.control.ready && window.fieldcomms.control.stream === 'open'")


def test_pending_answers_are_approved_or_rejected_in_one_click(
        desk_server: LiveServer, watched: Watched) -> None:  # noqa: F811 (the fixture imported above)
    server, t, page = desk_server, desk_server.tokens, watched.page
    server.ok("POST", "/api/v1/events", t["control"], {"tag": TAG, "title": "Approvals", "status": "live"},
              status=201)
    rumours = f"/api/v1/events/{TAG}/rumours"
    snipers: Json = server.ok("POST", rumours, t["alpha"], {"claim": "Snipers on the City Hall roof"}, status=201)
    looting: Json = server.ok("POST", rumours, t["alpha"], {"claim": "Shops on Fargate are being looted"}, status=201)

    # CONTROL1 proposes one answer, and sees that it needs someone else.
    open_control(page, server, "control")
    server.ok("POST", f"/api/v1/rumours/{snipers['id']}/rebuttals", t["control"], {
        "verdict": "false", "text": "The City Hall roof at 11:40: nobody there but pigeons.",
        "checks": {"names_person": True}}, status=201)
    mine = page.locator(f"#pending-answers > li[data-rumour-id='{snipers['id']}']")
    mine.wait_for()  # arrived live, through the stream
    assert page.locator("#answers-panel").is_visible()
    assert mine.locator("button.approve").is_disabled()
    assert "Names a person" in mine.inner_text() and "nobody there but pigeons" in mine.inner_text()

    # ALPHA1 proposes another; SECOND2 opens the control room and sees both, first in the side panel.
    server.ok("POST", f"/api/v1/rumours/{looting['id']}/rebuttals", t["alpha"], {
        "verdict": "false", "text": "No shop on Fargate has been looted."}, status=201)
    open_control(page, server, "second")
    items = page.locator("#pending-answers > li")
    wait_until(page, "() => document.querySelectorAll('#pending-answers > li').length === 2")
    first_panel = page.locator(".control-side > section").first
    assert first_panel.get_attribute("id") == "answers-panel"
    flagged = page.locator(f"#pending-answers > li[data-rumour-id='{snipers['id']}']")
    assert flagged.locator(".check-flag[data-check=names_person]").count() == 1
    screenshot(page, "control-pending-answers.png")

    # One click approves the flagged one (confirming the legal check); it leaves the panel and goes public.
    flagged.get_by_role("button", name="Legal checks confirmed: publish").click()
    flagged.wait_for(state="detached")
    assert server.ok("GET", f"/api/v1/rumours/{snipers['id']}")["status"] == "false"

    # Rejecting needs a reason typed beside the button, then one click.
    other = page.locator(f"#pending-answers > li[data-rumour-id='{looting['id']}']")
    other.get_by_role("button", name="Reject").click()
    assert "Give a reason" in other.locator(".answer-error").inner_text()
    other.locator("input.reason").fill("Waiting for the shop owners' word")
    other.get_by_role("button", name="Reject").click()
    other.wait_for(state="detached")
    wait_until(page, "() => document.getElementById('answers-panel').hidden")
    assert items.count() == 0
    assert server.request("GET", f"/api/v1/rumours/{looting['id']}")[0] == 404
    history = server.ok("GET", f"/api/v1/rumours/{looting['id']}", t["alpha"])["history"]
    assert history[-1]["action"] == "answer-rejected" and history[-1]["by"]["callsign"] == "SECOND2"
    watched.assert_clean()


def _multipart(parts: list[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "fieldcomms" + uuid.uuid4().hex
    body = b""
    for name, filename, ctype, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {ctype}\r\n\r\n").encode()
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_reported_photo_is_shown_beside_the_photo_seen_before(
        desk_server: LiveServer, watched: Watched) -> None:  # noqa: F811 (the fixture imported above)
    from tests.test_fingerprints import jpeg, scene
    from tests.test_fingerprints import screenshot as phone_screenshot

    server, t, page = desk_server, desk_server.tokens, watched.page
    tag = "photos2026"
    server.ok("POST", "/api/v1/events", t["control"], {"tag": tag, "title": "Photos", "status": "live"}, status=201)
    original = scene(21, (1200, 900))
    body, ctype = _multipart([("file", "gate.jpg", "image/jpeg", jpeg(original, 92))])
    earlier: Json = server.ok("POST", "/api/v1/photos", t["alpha"], data=body, content_type=ctype, status=201)
    body, ctype = _multipart([("report", "", "application/json", b'{"text": "Is this the gate right now?"}'),
                              ("photo", "shot.jpg", "image/jpeg", jpeg(phone_screenshot(original), 70))])
    server.ok("POST", f"/api/v1/events/{tag}/reports", None, data=body, content_type=ctype, status=202)

    page.goto(f"{server.url}/control/{tag}")
    if page.locator("#token").is_visible():
        page.locator("#token").fill(t["second"])
        page.get_by_role("button", name="Open the control room").click()
    wait_until(page, "() => window.fieldcomms.control.ready")
    report = page.locator("#reports > li").first
    report.wait_for()
    seen = report.locator(f".seen-before[data-photo-id='{earlier['id']}']")
    seen.wait_for()
    assert "Seen before: first uploaded" in seen.inner_text()
    # Both pictures are drawn from the authenticated fetch (they are not public).
    wait_until(page, """() => { const imgs = document.querySelectorAll('#reports > li:first-child img');
        return imgs.length === 2 && [...imgs].every(i => i.complete && i.naturalWidth > 0); }""")
    screenshot_path = page.locator("#reports").screenshot(path=str(Path(__file__).parents[1] / "artifacts" /
                                                                   "control-seen-before.png"))
    assert screenshot_path
    watched.assert_clean()
