"""The page handlers: the public event feed, the rumour board and the control room.

The public pages read through `ctx.view(..., None)` (and `public_board`, which does the same) and nothing
else: a page never decides on its own what the public may see. They ignore any token a request carries, so a
page is the same for everyone and can be cached.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ..domain.events import get_event
from ..domain.rumours import public_board
from ..errors import NotFound
from ..keys import SERVICES
from ..services import Services
from .render import JINJA

PAGE_SIZE = 50
UPDATES = "updates"

Doc = dict[str, Any]


def _render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status, app_key=JINJA)
    response.charset = "utf-8"
    return response


def not_found(request: web.Request, what: str) -> web.Response:
    """A small HTML page: a person followed a link, so they get words and a way on, not problem+json."""
    return _render(request, "not_found.html", {"what": what}, status=404)


def _event(ctx: Services, tag: str) -> Doc | None:
    try:
        event = get_event(ctx, tag)
    except NotFound:
        return None
    return ctx.view("events", event, None)


def _before(request: web.Request) -> int | None:
    raw = request.query.get("before", "")
    # isascii: str.isdigit() also accepts "²" and other digits int() refuses; 19 digits hold any seq.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) < 2**63 else None


def public_updates(ctx: Services, tag: str, before: int | None, limit: int = PAGE_SIZE) -> tuple[list[Doc], bool]:
    """The newest public updates (below `before`), as the public sees them, and whether older ones exist."""
    shown: list[Doc] = []
    for doc in ctx.public_updates.newest_first(tag, before=before):  # only what the public may have seen
        seen = ctx.view(UPDATES, doc, None)
        if seen is None:
            continue
        if len(shown) == limit:
            return shown, True
        shown.append(seen)
    return shown, False


def _page_context(ctx: Services, event: Doc, current: str) -> dict[str, Any]:
    tag = event["tag"]
    return {
        "current": current,
        "event": event,
        "tag": tag,
        "organisation": ctx.settings.organisation,
        "tile_url": ctx.settings.tile_url,
        "last_seq": ctx.store.last_seq,
        "base_url": ctx.settings.public_base_url,
    }


async def event_page(request: web.Request) -> web.Response:
    ctx = request.app[SERVICES]
    event = _event(ctx, request.match_info["tag"])
    if event is None:
        return not_found(request, f"There is no event #{request.match_info['tag']}.")
    before = _before(request)
    updates, more = public_updates(ctx, event["tag"], before)
    board = public_board(ctx, event["tag"])
    context = _page_context(ctx, event, "feed")
    context.update({
        "updates": updates,
        "older": updates[-1]["seq"] if more and updates else None,
        "paged": before is not None,
        "verdicts": [entry["rumour"] for entry in board],
    })
    return _render(request, "event.html", context)


async def rumours_page(request: web.Request) -> web.Response:
    ctx = request.app[SERVICES]
    event = _event(ctx, request.match_info["tag"])
    if event is None:
        return not_found(request, f"There is no event #{request.match_info['tag']}.")
    context = _page_context(ctx, event, "rumours")
    context["board"] = public_board(ctx, event["tag"])
    return _render(request, "rumours.html", context)


async def control_page(request: web.Request) -> web.Response:
    """The page holds no data: its script asks for a token and reads everything through the API with it."""
    ctx = request.app[SERVICES]
    event = _event(ctx, request.match_info["tag"])
    if event is None:
        return not_found(request, f"There is no event #{request.match_info['tag']}.")
    context = _page_context(ctx, event, "control")
    context["stale_after_minutes"] = ctx.settings.stale_after_minutes
    return _render(request, "control.html", context)
