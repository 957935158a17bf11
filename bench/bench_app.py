"""Issue 13: the weight of the handset app's shell, as a phone downloads it on a thin mobile link.

A real `fieldcomms serve` is asked, with `Accept-Encoding: gzip`, for every file the service worker caches that
is the app's own code or styles (the page, the worker, the manifest, the JavaScript modules, the style sheet) and
the bytes on the wire are summed. The icons are reported apart (PNG does not gzip; the budget is for code and
styles), and there is no map library to leave out: the app has no map. Target: `app_shell_kb_gzip` <= 100.
"""

from __future__ import annotations

import gzip
import urllib.request
from typing import Any

from fieldcomms.web import handset

from .util import server, temp_dir

BUDGET_KB = 100.0


def _fetch(port: int, path: str) -> tuple[int, int]:
    """(bytes on the wire with gzip, bytes once decompressed)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        wire = resp.read()
        encoded = resp.headers.get("Content-Encoding") == "gzip"
    return len(wire), len(gzip.decompress(wire) if encoded else wire)


def run() -> dict[str, Any]:
    code = [url for url in handset.shell_urls() if not url.endswith(".png")] + ["/app/sw.js"]
    icons = [url for url in handset.shell_urls() if url.endswith(".png")]
    with temp_dir("fc-bench-app-") as data, server(data, env={"FIELDCOMMS_TILE_URL": ""}) as (port, _proc):
        sizes = {url: _fetch(port, url) for url in code}
        icon_bytes = sum(_fetch(port, url)[0] for url in icons)
    wire = sum(w for w, _ in sizes.values())
    raw = sum(r for _, r in sizes.values())
    for url, (w, r) in sorted(sizes.items()):
        print(f"  {url:<32} {r / 1024:7.1f} KB  ->  {w / 1024:6.1f} KB gzipped")
    figures = {
        "app_shell_kb_gzip": round(wire / 1024, 1),
        "app_shell_kb_raw": round(raw / 1024, 1),
        "app_shell_files": len(sizes),
        "app_icons_kb": round(icon_bytes / 1024, 1),
        "app_shell_within_budget": wire / 1024 <= BUDGET_KB,
    }
    print(f"  total {figures['app_shell_kb_raw']} KB, {figures['app_shell_kb_gzip']} KB gzipped "
          f"(budget {BUDGET_KB:g} KB); icons {figures['app_icons_kb']} KB")
    return figures
