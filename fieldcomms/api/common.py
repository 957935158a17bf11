"""What every handler shares: JSON in and out, paging, the context and the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest, PayloadTooLarge, ValidationFailed
from ..idempotency import HEADER, Slot
from ..keys import BODY, SERVICES, VIEWER
from ..services import Services
from ..visibility import Item, Viewer

JSON = "application/json"


def ctx_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def viewer_of(request: web.Request) -> Viewer | None:
    return request[VIEWER]


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200, content_type: str = JSON, **kw: Any) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type=content_type, **kw)


def key_from(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not all(0x20 <= ord(c) <= 0x7E for c in key):
        raise ValidationFailed.one(HEADER, "must be 1 to 128 printable ASCII characters")
    return key


def location(status: int, template: str, created: Any) -> dict[str, str]:
    """RFC 9110 s15.3.2: a 201 names the resource it made in `Location` (`template` formatted with the
    created item's fields, e.g. "/api/v1/updates/{id}"); any other answer, a replayed error too, has none."""
    if status != 201 or not isinstance(created, dict):
        return {}
    return {"Location": template.format_map(created)}


async def idempotent_create(request: web.Request, caller: str, fp: str,
                            create: Callable[[Slot | None], Awaitable[Any]], *, content_type: str = JSON,
                            location_of: str) -> web.Response:
    """201 with what `create(slot)` stored, once per Idempotency-Key: a repeat gets the first answer (see
    idempotency.py). `fp` fingerprints the request; `create` passes `slot` on to Store.append. `location_of`
    is the `Location` template (see `location`), so a replay names the same resource."""

    async def run(slot: Slot | None) -> tuple[int, Any]:
        return 201, await create(slot)

    status, out = await ctx_of(request).idempotency.run(caller, key_from(request), fp, run)
    return json_response(out, status=status, content_type=content_type, headers=location(status, location_of, out))


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read at most limit + 1 bytes, so 'too large' is known without reading everything. Kept on the request:
    a request that lost a write race to another worker runs again (app.write_retry_middleware)."""
    cached = request.get(BODY)
    if cached is not None:
        return cached
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    body = b"".join(chunks)
    request[BODY] = body
    return body


def parse_json(raw: bytes, field: str = "body") -> Any:
    if not raw.strip():
        raise ValidationFailed.one(field, "a JSON body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The {field} is not valid JSON: {exc}", [{"field": field, "message": "not valid JSON"}]) from None
    if _too_deep(data, MAX_JSON_DEPTH):
        # orjson reads 1,024 levels but writes only 254: a deeper document would be accepted and then fail
        # to be stored (a 500). No request of this API needs more than a handful.
        raise ValidationFailed.one(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
    return data


MAX_JSON_DEPTH = 32


def _too_deep(data: Any, limit: int) -> bool:
    """Whether `data` nests objects or arrays deeper than `limit`; iterative, so no recursion limit applies."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


async def read_json(request: web.Request) -> Any:
    # JSON only, declared as such: `text/plain`, a form's types and a body without a type are what a page on
    # another site can make a visitor's browser send without asking (no CORS preflight), e.g. public reports.
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in (JSON, "application/merge-patch+json") and not (ctype.startswith("application/")
                                                                     and ctype.endswith("+json")):
        from ..errors import UnsupportedMediaType

        raise UnsupportedMediaType(f"Send application/json, not {ctype or 'a body without a Content-Type'}.")
    raw = await read_body(request, ctx_of(request).settings.max_body_bytes)
    return parse_json(raw)


def int_param(request: web.Request, name: str, *, default: int | None = None, lo: int = 0, hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        raise ValidationFailed.one(name, f"must be from {lo} to {hi}" if hi is not None else f"must be >= {lo}")
    return value


def float_param(request: web.Request, name: str, *, lo: float, hi: float, required: bool = True) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if required:
            raise ValidationFailed.one(name, "is required")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValidationFailed.one(name, "must be a number") from None
    if not lo <= value <= hi:  # also false for NaN
        raise ValidationFailed.one(name, f"must be a finite number from {lo} to {hi}")
    return value


def choice_param(request: web.Request, name: str, options: Iterable[str]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    options = tuple(options)
    if raw not in options:
        raise ValidationFailed.one(name, "must be one of " + ", ".join(options))
    return raw


# (oldest_first, since or before) -> the candidate documents in that order
Source = Callable[[bool, int | None], Iterator[Item | None]]


class Page:
    """The paging rule shared by every list: newest first with limit/before, or with since, oldest first."""

    def __init__(self, request: web.Request) -> None:
        self.since = int_param(request, "since")
        self.before = int_param(request, "before", lo=1)
        self.limit = int_param(request, "limit", default=50, lo=1, hi=500) or 50
        if self.since is not None and self.before is not None:
            raise ValidationFailed.one("before", "cannot be combined with since")

    def collect(
        self,
        ctx: Services,
        coll: str,
        event: str,
        viewer: Viewer | None,
        keep: Callable[[Item], bool] = lambda item: True,
        source: Source | None = None,
    ) -> dict[str, Any]:
        """`source(oldest_first, bound)` may give the candidates instead of the event's whole collection (an
        index that holds only what the request can answer with), in the same order and bounds."""
        store = ctx.store
        docs: Iterator[Item | None]
        if source is not None:
            docs = source(True, self.since) if self.since is not None else source(False, self.before)
        elif self.since is not None:
            docs = store.oldest_first(coll, event, self.since)
        else:
            docs = store.newest_first(coll, event, self.before)
        items: list[Item] = []
        last_seq = store.last_seq
        for doc in docs:
            if doc is None or not keep(doc):
                continue
            seen = ctx.view(coll, doc, viewer)
            if seen is None:
                continue
            items.append(seen)
            if len(items) >= self.limit:
                if self.since is not None:
                    last_seq = doc["seq"]  # more may follow: continue from here
                break
        return {"items": items, "last_seq": last_seq}
