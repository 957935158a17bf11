"""The template environment: autoescaping everywhere, and the few filters the pages share."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from ..rumours.claimreview import jsonld_script

JINJA = web.AppKey("fieldcomms_web_jinja", jinja2.Environment)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"

THUMB_LONG_SIDE = 320

# A label and a symbol for each kind, so a warning never depends on colour alone.
KINDS = {
    "info": ("Information", "i"),
    "warning": ("Warning", "\u26a0"),
    "alert": ("Alert", "\u203c"),
}
VERDICTS = {
    "false": "False",
    "misleading": "Misleading",
    "unproven": "Unproven",
    "true": "True",
    "investigating": "Being checked",
    "unverified": "Not yet checked",
}


def when(value: str | None) -> str:
    """`2011-03-12T10:02:00Z` -> `12 Mar 2011, 10:02 UTC`: times read the same to everyone, whatever their zone."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return value
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def thumb_size(photo: dict[str, Any]) -> tuple[int, int]:
    """The thumbnail's size, so the page reserves its space before it loads."""
    width, height = int(photo.get("width") or THUMB_LONG_SIDE), int(photo.get("height") or THUMB_LONG_SIDE)
    scale = min(1.0, THUMB_LONG_SIDE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def kind_label(kind: str) -> str:
    return KINDS.get(kind, (kind.title(), ""))[0]


def kind_symbol(kind: str) -> str:
    return KINDS.get(kind, ("", "\u2022"))[1]


def verdict_label(status: str) -> str:
    return VERDICTS.get(status, status.title())


def jsonld(obj: Any) -> Markup:
    # jsonld_script escapes <, > and & as JSON \u escapes, so the text cannot end the <script> element.
    return Markup(jsonld_script(obj))


def _file_versions() -> dict[str, str]:
    """A short content hash per static file: URLs change when the file does, so browsers never run old code."""
    versions = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file():
            versions[path.name] = hashlib.blake2b(path.read_bytes(), digest_size=6).hexdigest()
    return versions


def setup_templates(app: web.Application) -> jinja2.Environment:
    versions = _file_versions()

    def static_url(name: str) -> str:
        version = versions.get(name)
        return f"/static/{name}" + (f"?v={version}" if version else "")

    env = aiohttp_jinja2.setup(
        app,
        app_key=JINJA,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every template, whatever its name
        default_helpers=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({"when": when, "thumb_size": thumb_size, "kind_label": kind_label,
                        "kind_symbol": kind_symbol, "verdict_label": verdict_label, "jsonld": jsonld})
    env.globals["static_url"] = static_url
    env.globals.pop("app", None)  # templates get what a page passes them, not the application
    return env
