"""The handset app as the server delivers it, without a browser: the page and its test hooks, the manifest and
its icons, the service worker and the shell it caches, the headers, the size budget, and `user add --qr`.

What the app does in a browser is tested in tests/browser/test_app.py.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import segno
from aiohttp.test_utils import TestClient
from lxml import html as lxml_html
from PIL import Image

from fieldcomms.__main__ import sign_in_link
from fieldcomms.config import Settings
from fieldcomms.web import handset

HOOKS = ("token", "sign-in", "event", "text", "kind", "public", "photo", "send", "outbox-count", "not-sent",
         "feed", "share-position")
APP_BUDGET_BYTES = 100 * 1024


async def test_the_page_carries_every_test_hook_and_its_settings(client: TestClient) -> None:
    resp = await client.get("/app")
    assert resp.status == 200 and resp.content_type == "text/html"
    doc = lxml_html.document_fromstring(await resp.text())
    for name in HOOKS:
        assert len(doc.xpath(f'//*[@data-test="{name}"]')) == 1, name
    assert doc.xpath('//*[@data-test="outbox-count"]')[0].text_content() == "0"
    assert doc.xpath('//link[@rel="manifest"]/@href') == ["/app/manifest.webmanifest"]
    # Internal unless the officer ticks public: the box starts unticked.
    assert doc.xpath('//input[@data-test="public"]/@type') == ["checkbox"]
    assert not doc.xpath('//input[@data-test="public"]/@checked')
    assert doc.xpath('//select[@data-test="kind"]/option/@value') == ["info", "warning", "alert"]
    assert doc.xpath('//input[@data-test="photo"]/@accept') == ["image/*"]
    assert doc.xpath('//*[@id="app-config"]/@data-position-interval') == ["30"]
    # Only our own module scripts: no inline code, no CDN.
    scripts = doc.xpath("//script")
    assert scripts and all(s.get("type") == "module" and s.get("src", "").startswith("/app/") and not s.text
                           for s in scripts)


async def test_the_app_may_ask_for_the_position_and_show_blob_photos_and_no_other_page_may(
    client: TestClient,
) -> None:
    app = await client.get("/app")
    assert "geolocation=(self)" in app.headers["Permissions-Policy"]
    csp = app.headers["Content-Security-Policy"]
    assert re.search(r"img-src [^;]*blob:", csp) and "script-src 'self';" in csp and "default-src 'none'" in csp
    assert app.headers["Cache-Control"] == "no-cache"
    other = await client.get("/static/fieldcomms.css")
    assert "geolocation=()" in other.headers["Permissions-Policy"]
    assert "blob:" not in other.headers["Content-Security-Policy"]


async def test_manifest_and_icons(client: TestClient) -> None:
    resp = await client.get("/app/manifest.webmanifest")
    assert resp.status == 200 and resp.content_type == "application/manifest+json"
    manifest = await resp.json(content_type=None)
    assert manifest["start_url"] == "/app" and manifest["display"] == "standalone" and manifest["name"]
    sizes = set()
    for icon in manifest["icons"]:
        got = await client.get(icon["src"])
        assert got.status == 200 and got.content_type == "image/png"
        image = Image.open(io.BytesIO(await got.read()))
        assert image.format == "PNG" and f"{image.width}x{image.height}" == icon["sizes"]
        sizes.add(image.width)
    assert sizes == {192, 512}


async def test_the_service_worker_caches_a_shell_that_exists(client: TestClient) -> None:
    resp = await client.get("/app/sw.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    assert resp.headers["Service-Worker-Allowed"] == "/app"
    body = await resp.text()
    assert f'"fieldcomms-app-{handset.shell_version()}"' in body
    shell = handset.shell_urls()
    assert "/app" in shell and "/app/main.js" in shell and "/app/app.css" in shell
    for url in shell:
        assert f'"{url}"' in body
        got = await client.get(url)
        assert got.status == 200, url
    # Every module the app imports is in the shell, or the app would not open offline.
    for name, source in handset.app_files().items():
        for imported in re.findall(rb'from "\./([\w.-]+)"', source):
            assert f"/app/{imported.decode()}" in shell, (name, imported)


async def test_what_is_not_an_app_file_is_404(client: TestClient) -> None:
    for url in ("/app/nope.js", "/app/icon-64.png", "/app/sw.template.js", "/app/..%2Fconfig.py", "/app/db"):
        resp = await client.get(url)
        assert resp.status == 404, url
        assert resp.content_type == "application/problem+json"


def test_the_app_fits_its_size_budget() -> None:
    """Its own HTML, scripts and styles, gzipped (bench/bench_app.py reports the figure)."""
    total = sum(len(gzip.compress(body, 9)) for body in handset.app_files().values())
    total += len(gzip.compress((handset.TEMPLATES_DIR / "app.html").read_bytes(), 9))
    total += len(gzip.compress((handset.TEMPLATES_DIR / "sw.js").read_bytes(), 9))
    assert 0 < total <= APP_BUDGET_BYTES


async def test_the_app_routes_are_in_the_openapi_document(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    for route in ("/app", "/app/manifest.webmanifest", "/app/sw.js", "/app/{name}"):
        assert "get" in doc["paths"][route], route


def test_user_add_qr_prints_the_sign_in_link_as_a_qr_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env["FIELDCOMMS_DEMO_ADMIN"] = "false"
    done = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--name", "Alpha", "--callsign",
                           "ALPHA1", "--role", "officer", "--qr", "--base-url", "https://fc.example.org/",
                           "--data-dir", str(tmp_path / "data")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    token = lines[-1]  # still alone on the last line
    link = f"https://fc.example.org/app#token={token}"
    assert link in lines[0]
    # The code printed is the link's code (segno is deterministic).
    expected = io.StringIO()
    segno.make(link, error="m").terminal(out=expected, compact=True)
    assert expected.getvalue() in done.stdout
    assert len(expected.getvalue().splitlines()) > 20


def test_the_link_uses_base_url() -> None:
    assert sign_in_link(Settings(base_url="https://x.example/"), "fc_abc") == "https://x.example/app#token=fc_abc"
    assert sign_in_link(Settings(port=9000), "t") == "http://127.0.0.1:9000/app#token=t"
