"""The control page's decision log panel (control-decisions.js) in Chromium: entries logged elsewhere appear
live, control adds one with the form, and rules one through by superseding it (it stays, struck through)."""

from __future__ import annotations

from typing import Any

from .live_server import Json, LiveServer
from .test_browser import (  # noqa: F401  (fixtures)
    TAG,
    Watched,
    browser_context,
    server,
    sign_in,
    wait_until,
    watched,
    world,
)


def test_decision_log_panel(server: LiveServer, world: Json, watched: Watched) -> None:  # noqa: F811
    page, t = watched.page, server.tokens
    sign_in(page, server)
    panel = page.locator("#decisions-panel")
    panel.wait_for()
    # Logged by another control screen: it appears here from the stream.
    other: Any = server.ok("POST", f"/api/v1/events/{TAG}/decisions", t["control"],
                           {"decision": "Hold the cordon at Barkers Pool", "rationale": "Crowd density rising"},
                           status=201)
    entry = page.locator(f"#decisions > li[data-id='{other['id']}']")
    entry.wait_for()
    assert "Crowd density rising" in entry.inner_text()

    # Rule it through from the panel: the new entry supersedes it, the old one stays, struck through.
    entry.get_by_role("button", name="Supersede").click()
    assert "Hold the cordon" in page.locator("#decision-supersedes").inner_text()
    page.locator("#decision-text").fill("Open the cordon to the north")
    page.locator("#decision-rationale").fill("The hold order was based on a wrong crowd count")
    page.locator("#decision-options").fill("Hold; open north; open south")
    page.get_by_role("button", name="Log decision").click()
    page.locator("#decision-result", has_text="Decision logged.").wait_for()
    wait_until(page, "() => document.querySelectorAll('#decisions > li').length === 2")
    struck = page.locator(f"#decisions > li[data-id='{other['id']}'] s.decision-text")
    struck.wait_for()
    assert struck.inner_text() == "Hold the cordon at Barkers Pool"
    assert page.locator(f"#decisions > li[data-id='{other['id']}'] button[data-test=supersede]").count() == 0
    log: Any = server.ok("GET", f"/api/v1/events/{TAG}/decisions", t["control"])
    newest = next(d for d in log["items"] if d["id"] != other["id"])
    assert newest["supersedes"] == other["id"] and newest["options"] == "Hold; open north; open south"
    # A form sent without its required fields logs nothing.
    page.get_by_role("button", name="Log decision").click()
    assert len(server.ok("GET", f"/api/v1/events/{TAG}/decisions", t["control"])["items"]) == 2
    watched.assert_clean()
