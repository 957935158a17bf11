"""The pages without a browser: what they show, what they never show, and the headers that guard them.

The HTML is read back with lxml, as a browser would parse it, rather than searched as text, so a test cannot
pass on markup that only looks right.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from answer import ok
from conftest import EVENT_TAG, auth
from lxml import html as lxml_html
from PIL import Image

from fieldcomms.config import Settings
from fieldcomms.web import LEAFLET_DIR, security
from fieldcomms.web.render import JINJA

TAG = EVENT_TAG
LEAFLET_JS = Path(LEAFLET_DIR) / "leaflet.js"
PAGES = (f"/events/{TAG}", f"/events/{TAG}/rumours", f"/control/{TAG}")
Json = dict[str, Any]


# ---- helpers -------------------------------------------------------------------------------------------


async def post_update(client: TestClient, token: str, text: str, **extra: Any) -> Json:
    body = {"text": text, "visibility": "public", **extra}
    return await ok(await client.post(f"/api/v1/events/{TAG}/updates", json=body, headers=auth(token)), 201)


async def upload_photo(client: TestClient, token: str, size: tuple[int, int] = (640, 480)) -> Json:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "JPEG")
    form = FormData()
    form.add_field("file", buf.getvalue(), filename="roof.jpg", content_type="image/jpeg")
    return await ok(await client.post("/api/v1/photos", data=form, headers=auth(token)), 201)


async def answered_rumour(client: TestClient, token: str, claim: str, verdict: str, text: str,
                          photos: list[str] | None = None) -> Json:
    rumour = await ok(await client.post(f"/api/v1/events/{TAG}/rumours", json={"claim": claim}, headers=auth(token)), 201)
    body: Json = {"verdict": verdict, "text": text}
    if photos:
        body["photos"] = photos
    return await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json=body, headers=auth(token)), 201)


async def page(client: TestClient, url: str, token: str | None = None) -> tuple[Any, Any]:
    resp = await client.get(url, headers=auth(token))
    text = await resp.text()
    assert resp.status == 200, text
    return resp, lxml_html.document_fromstring(text)


def csp_directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def update_items(doc: Any) -> list[Any]:
    return doc.xpath('//ol[@id="updates"]/li[contains(concat(" ", @class, " "), " update ")]')


# ---- headers ------------------------------------------------------------------------------------------


def assert_security_headers(headers: Any, where: str) -> None:
    csp = headers.get("Content-Security-Policy")
    assert csp, f"{where}: no Content-Security-Policy"
    d = csp_directives(csp)
    assert d["script-src"] == ["'self'"], f"{where}: scripts from anywhere but 'self': {d['script-src']}"
    assert "'unsafe-inline'" not in d["style-src"] and "'unsafe-eval'" not in csp, where
    assert d["default-src"] == ["'none'"] and d["object-src"] == ["'none'"], where
    assert d["connect-src"] == ["'self'"], where
    assert d["frame-ancestors"] == ["'none'"] and headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("no-referrer", "strict-origin-when-cross-origin"), where


async def test_pages_render_as_html_with_the_security_headers(client: TestClient, event: Json) -> None:
    for url in PAGES:
        resp, doc = await page(client, url)
        assert resp.content_type == "text/html" and resp.charset == "utf-8", url
        assert_security_headers(resp.headers, url)
        assert doc.get("lang") == "en"
        assert doc.xpath("//header") and doc.xpath("//main") and doc.xpath("//h1"), f"{url}: landmarks"
        assert doc.xpath('//meta[@name="viewport"]'), f"{url}: not made for phones"
        # No inline script or handler: every executable script is a file from /static/.
        for script in doc.xpath("//script"):
            if script.get("type") == "application/ld+json":
                continue
            assert script.get("src", "").startswith("/static/"), f"{url}: inline script"
        assert not doc.xpath("//@*[starts-with(name(), 'on')]"), f"{url}: inline event handler"
        assert not doc.xpath("//@style") and not doc.xpath("//style"), f"{url}: inline style (blocked by the CSP)"


async def test_static_files_and_errors_carry_the_headers_too(client: TestClient) -> None:
    for url in ("/static/fieldcomms.css", "/static/control.js", "/static/leaflet/leaflet.js",
                "/static/leaflet/leaflet.css", "/static/leaflet/images/layers.png", "/events/nosuchevent"):
        resp = await client.get(url)
        await resp.read()
        assert_security_headers(resp.headers, url)
    resp = await client.get("/static/leaflet/leaflet.js")
    assert resp.status == 200 and "javascript" in resp.content_type
    assert b"Leaflet" in await resp.read()


async def test_static_files_linked_by_content_hash_are_cached_for_good(client: TestClient, event: Json) -> None:
    _, doc = await page(client, f"/events/{TAG}")
    [ours] = [src for src in doc.xpath("//script/@src") if src.startswith("/static/public.js")]
    assert "?v=" in ours
    resp = await client.get(ours)
    assert resp.status == 200 and "immutable" in resp.headers["Cache-Control"]
    resp = await client.get("/static/nosuchfile.js?v=1")
    assert resp.status == 404 and "immutable" not in resp.headers.get("Cache-Control", "")


async def test_pages_load_only_local_scripts_and_styles(client: TestClient, event: Json) -> None:
    """Leaflet comes from the xstatic package, never a CDN; each referenced file is served."""
    for url in PAGES:
        _, doc = await page(client, url)
        refs = doc.xpath("//script/@src") + doc.xpath('//link[@rel="stylesheet"]/@href')
        assert refs, url
        for ref in refs:
            assert ref.startswith("/static/"), f"{url}: {ref}"
            resp = await client.get(ref)
            assert resp.status == 200, ref
        if url != PAGES[1]:
            assert "/static/leaflet/leaflet.js" in refs


def test_the_tile_host_is_allowed_and_nothing_else() -> None:
    assert security.tile_source("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://tile.openstreetmap.org"
    assert security.tile_source("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png") == "https://*.tile.example.org:8443"
    assert security.tile_source("") is None
    assert security.tile_source("/tiles/{z}/{x}/{y}.png") is None  # our own: 'self' covers it
    for hostile in ("https://x.org; script-src *", "javascript:alert(1)", "https://a.org'/x", "https://a b.org/"):
        assert security.tile_source(hostile) is None, hostile
        csp = csp_directives(security.content_security_policy(hostile))
        assert csp["script-src"] == ["'self'"] and csp["img-src"] == ["'self'", "data:"]


async def test_the_page_passes_the_tile_url_and_the_csp_allows_its_host(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    from fieldcomms.app import create_app

    settings = Settings(data_dir=str(tmp_path / "d"), demo_admin=False, tile_url="https://tiles.example.net/{z}/{x}/{y}.png")
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/static/fieldcomms.css")
    assert "https://tiles.example.net" in csp_directives(resp.headers["Content-Security-Policy"])["img-src"]


def test_templates_escape_everything(app: Any) -> None:
    env = app[JINJA]
    for name in ("page.html", "feed.xml", "notes.txt", "x"):
        assert (env.autoescape(name) if callable(env.autoescape) else env.autoescape) is True, name
    assert env.from_string("{{ x }}").render(x="<b>&") == "&lt;b&gt;&amp;"


# ---- the public feed -----------------------------------------------------------------------------------


async def test_internal_and_retracted_updates_never_reach_the_public_pages(
    client: TestClient, event: Json, officer_token: str, control_token: str
) -> None:
    await post_update(client, officer_token, "Public: crowd moving calmly down Fargate.")
    await post_update(client, officer_token, "INTERNAL-MARKER-7f3a serials 12 and 14 to Barkers Pool.",
                      visibility="internal")
    gone = await post_update(client, officer_token, "RETRACTED-MARKER-91c2 road closed (wrong).")
    await ok(await client.delete(f"/api/v1/updates/{gone['id']}", headers=auth(officer_token)))
    answered = await answered_rumour(client, officer_token, "Snipers on the roofs", "false", "Rebuttal text here.")
    hidden_rumour = await ok(await client.post(f"/api/v1/events/{TAG}/rumours",
                                               json={"claim": "UNANSWERED-MARKER-44 kettle"},
                                               headers=auth(officer_token)), 201)
    assert hidden_rumour["status"] == "unverified" and answered["status"] == "false"
    # A token changes nothing: the pages are public, whoever asks.
    for token in (None, control_token):
        for url in PAGES[:2]:
            resp = await client.get(url, headers=auth(token))
            text = await resp.text()
            assert resp.status == 200
            for marker in ("INTERNAL-MARKER-7f3a", "RETRACTED-MARKER-91c2", "UNANSWERED-MARKER-44", gone["id"]):
                assert marker not in text, f"{url} leaks {marker}"
    _, doc = await page(client, f"/events/{TAG}")
    texts = [li.xpath('string(.//p[@class="update-text"])') for li in update_items(doc)]
    assert texts[-1] == "Public: crowd moving calmly down Fargate."
    assert "Snipers on the roofs" in doc.xpath('string(//ul[@id="verdicts"])')


async def test_update_text_is_escaped(client: TestClient, event: Json, officer_token: str) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"'
    await post_update(client, officer_token, hostile)
    resp = await client.get(f"/events/{TAG}")
    text = await resp.text()
    assert "<script>alert(1)</script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    doc = lxml_html.document_fromstring(text)
    [item] = update_items(doc)
    assert item.xpath('string(.//p[@class="update-text"])') == hostile  # shown as the text it is
    assert not doc.xpath("//img[@src='x']") and all(s.get("src") for s in doc.xpath("//script[not(@type)]"))


async def test_updates_show_kind_time_photos_and_zones(
    client: TestClient, event: Json, officer_token: str
) -> None:
    photo = await upload_photo(client, officer_token, (640, 480))
    info = await post_update(client, officer_token, "Route agreed: Devonshire Green to Barkers Pool.",
                             photos=[photo["id"]], location={"lat": 53.3789, "lon": -1.4779},
                             captured_at="2011-03-12T10:02:00Z")
    warning = await post_update(client, officer_token, "Broken glass on West Street.", kind="warning")
    _, doc = await page(client, f"/events/{TAG}")
    items = update_items(doc)
    assert [li.get("data-id") for li in items] == [warning["id"], info["id"]]  # newest first
    warn, first = items
    assert warn.get("data-kind") == "warning" and "kind-warning" in warn.get("class")
    # A warning is labelled in words and with a symbol, not by colour alone.
    badge = warn.xpath('.//span[contains(@class, "kind-badge")]')[0]
    assert "Warning" in badge.text_content() and badge.xpath('.//span[@aria-hidden="true"]')
    assert first.xpath("string(.//time/@datetime)") == "2011-03-12T10:02:00Z"
    assert first.xpath("string(.//time)") == "12 Mar 2011, 10:02 UTC"
    assert first.get("data-lat") == "53.3789" and first.get("data-lon") == "-1.4779"
    [link] = first.xpath('.//ul[@class="photos"]//a')
    assert link.get("href") == photo["url"]
    [img] = link.xpath(".//img")
    assert img.get("src") == photo["thumb_url"] and img.get("alt", "").strip()
    assert (img.get("width"), img.get("height")) == ("320", "240")
    assert first.get("id") == f"update-{info['id']}"  # rebuttal URLs point at #update-<id>


async def test_older_updates_page_back_with_before(client: TestClient, event: Json, officer_token: str) -> None:
    posted = [await post_update(client, officer_token, f"Update number {i}") for i in range(53)]
    _, doc = await page(client, f"/events/{TAG}")
    items = update_items(doc)
    assert len(items) == 50 and items[0].get("data-id") == posted[-1]["id"]
    [older] = doc.xpath('//nav[@class="pager"]//a[@rel="next"]/@href')
    _, doc2 = await page(client, older)
    assert [li.get("data-id") for li in update_items(doc2)] == [p["id"] for p in reversed(posted[:3])]
    assert not doc2.xpath('//a[@rel="next"]')
    # Nonsense in `before` is ignored, not an error page.
    resp = await client.get(f"/events/{TAG}?before=abc")
    assert resp.status == 200


async def test_event_page_links_feeds_board_and_stream(client: TestClient, event: Json) -> None:
    _, doc = await page(client, f"/events/{TAG}")
    hrefs = doc.xpath("//a/@href")
    assert f"/events/{TAG}/feed.atom" in hrefs and f"/events/{TAG}/rumours" in hrefs
    assert doc.xpath(f'//link[@rel="alternate"][@href="/events/{TAG}/feed.atom"]')
    [config] = doc.xpath('//*[@id="page-config"]')
    assert config.get("data-stream-url") == f"/api/v1/events/{TAG}/stream"
    assert int(config.get("data-last-seq")) >= event["seq"]


# ---- the rumour board ------------------------------------------------------------------------------------


async def test_rumour_board_carries_claimreview_jsonld(
    client: TestClient, event: Json, officer_token: str, settings: Settings
) -> None:
    photo = await upload_photo(client, officer_token)
    claim = 'Police snipers on the roofs </script><script>alert("x")</script> <!--'
    answered = await answered_rumour(client, officer_token, claim, "false",
                                     "Photo from the roof of the Crucible: no one is there.", [photo["id"]])
    second = await answered_rumour(client, officer_token, "The demonstration area is a kettle", "misleading",
                                   "The exits on Surrey Street and Norfolk Street are open.")
    resp, doc = await page(client, f"/events/{TAG}/rumours")
    text = await resp.text()
    assert "<script>alert(" not in text
    items = doc.xpath('//li[contains(@class, "rumour")]')
    assert [li.get("data-rumour-id") for li in items] == [second["id"], answered["id"]]  # latest answer first
    reviews = {}
    for li in items:
        [script] = li.xpath('.//script[@type="application/ld+json"]')
        reviews[li.get("data-rumour-id")] = json.loads(script.text)
    review = reviews[answered["id"]]
    page_url = f"{settings.public_base_url}/events/{TAG}/rumours"
    assert review["@context"] == "https://schema.org" and review["@type"] == "ClaimReview"
    assert review["claimReviewed"] == claim
    assert review["reviewRating"]["alternateName"] == "False" and review["reviewRating"]["ratingValue"] == 1
    assert review["author"] == {"@type": "Organization", "name": settings.organisation}
    assert review["datePublished"] == answered["rebuttals"][-1]["at"][:10]
    assert review["url"] == answered["rebuttals"][-1]["url"]
    assert review["@id"] == f"{page_url}#rumour-{answered['id']}"
    assert review["itemReviewed"]["@type"] == "Claim"
    assert review["reviewBody"] == "Photo from the roof of the Crucible: no one is there."
    assert review["image"].endswith(photo["url"])
    assert reviews[second["id"]]["reviewRating"]["alternateName"] == "Misleading"
    # What a person reads: the claim, a verdict label in words, the rebuttal and its photo, the time.
    first = items[1]
    assert first.get("id") == f"rumour-{answered['id']}"
    assert first.xpath('string(.//*[contains(@class, "claim")][@id])').strip("\u201c\u201d") == claim
    assert first.xpath('string(.//strong[contains(@class, "verdict")])') == "False"
    assert first.xpath('string(.//p[@class="rebuttal-text"])') == "Photo from the roof of the Crucible: no one is there."
    [img] = first.xpath('.//p[@class="rebuttal-photo"]//img')
    assert img.get("src") == photo["thumb_url"] and img.get("alt")
    assert first.xpath(".//time/@datetime")


async def test_empty_board_says_so(client: TestClient, event: Json) -> None:
    _, doc = await page(client, f"/events/{TAG}/rumours")
    assert doc.xpath('//p[@class="board-empty"]') and not doc.xpath('//script[@type="application/ld+json"]')


# ---- the control room ----------------------------------------------------------------------------------


async def test_control_page_holds_no_data_and_asks_for_a_token(
    client: TestClient, event: Json, officer_token: str
) -> None:
    await post_update(client, officer_token, "INTERNAL-CONTROL-MARKER", visibility="internal")
    resp, doc = await page(client, f"/control/{TAG}")
    assert "INTERNAL-CONTROL-MARKER" not in await resp.text()
    [form] = doc.xpath('//form[@id="token-form"]')
    [field] = form.xpath('.//input[@id="token"]')
    assert field.get("type") == "password" and form.xpath('.//label[@for="token"]')
    assert form.get("action") is None and form.get("method") is None  # never submitted: JS keeps the token
    [config] = doc.xpath('//*[@id="page-config"]')
    assert config.get("data-tag") == TAG and config.get("data-tile-url") is not None


# ---- errors and traversal ----------------------------------------------------------------------------


async def test_static_files_answer_conditions_ranges_and_errors_like_any_response(client: TestClient) -> None:
    """A static file gets an ETag and a 304, gzip, the whole file for a Range (aiohttp's own file responses
    answered a bad Range or If-Match with an empty 416/412 that was not problem+json), and problem+json 404s."""
    url = "/static/leaflet/leaflet.js"
    whole = LEAFLET_JS.read_bytes()
    resp = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert await resp.read() == whole  # aiohttp's client undoes the gzip
    etag = resp.headers["ETag"]
    resp = await client.get(url, headers={"If-None-Match": etag})
    assert resp.status == 304 and await resp.read() == b""
    for headers in ({"Range": "bytes=9999999-1"}, {"Range": "bytes=0-9"}, {"If-Match": '"nope"'},
                    {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}):
        resp = await client.get(url, headers=headers)
        assert resp.status == 200, headers
        assert await resp.read() == whole, headers
    for missing in ("/static/", "/static/leaflet/", "/static/leaflet/images", "/static/nosuchfile.js"):
        resp = await client.get(missing)
        assert resp.status == 404, missing
        assert resp.content_type == "application/problem+json", missing
        assert (await resp.json())["status"] == 404


async def test_unknown_event_is_a_small_html_404(client: TestClient, event: Json) -> None:
    for url in ("/events/nosuchevent", "/events/nosuchevent/rumours", "/control/nosuchevent", "/events/%3Cb%3E"):
        resp = await client.get(url)
        text = await resp.text()
        assert resp.status == 404, url
        assert resp.content_type == "text/html", url
        assert "Traceback" not in text and "<b>" not in text
        assert lxml_html.document_fromstring(text).xpath("//h1")


@pytest.mark.parametrize("url", [
    "/static/../fieldcomms/app.py",
    "/static/..%2f__init__.py",
    "/static/%2e%2e/__init__.py",
    "/static/%2e%2e%2f%2e%2e%2fapp.py",
    "/static/leaflet/..%2f..%2f..%2f__init__.py",
    "/static/leaflet/%2e%2e/%2e%2e/__init__.py",
    "/static/..%5c__init__.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/",
    "/static/leaflet/",
    "/static/nosuchfile.js",
    "/events/..%2f..%2fetc%2fpasswd",
    "/events/libdempolicing/..%2f..%2fapi%2fv1%2fme",
    "/control/..%2fstatic%2fcontrol.js",
])
async def test_path_traversal_is_404(client: TestClient, event: Json, url: str) -> None:
    resp = await client.get(url)
    body = await resp.read()
    assert resp.status == 404, f"{url}: {resp.status}"
    assert b"import " not in body and b"root:" not in body


async def test_pages_are_in_the_openapi_document(client: TestClient) -> None:
    doc = await ok(await client.get("/api/v1/openapi.json"))
    for url in ("/events/{tag}", "/events/{tag}/rumours", "/control/{tag}"):
        operation = doc["paths"][url]["get"]
        assert "text/html" in operation["responses"]["200"]["content"], url
    assert not any(p.startswith("/static") for p in doc["paths"])
