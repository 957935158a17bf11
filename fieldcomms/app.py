"""create_app(settings, services) -> web.Application: middlewares, the services' lifecycle, routes.

Tests call create_app directly; `fieldcomms serve` runs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType

from aiohttp import hdrs, web
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_protocol import RequestPayloadError

from .auth import auth_middleware
from .config import Settings
from .errors import ApiError, Conflict, WriteConflict
from .keys import BODY, SERVICES, SETTINGS, VIEWER
from .services import Services, build_services
from .store.protocol import WRITES_DONE

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
COMPRESSIBLE = ("application/json", "application/problem+json", "application/geo+json", "application/atom+xml",
                "application/cap+xml", "text/html", "text/css", "application/javascript", "text/javascript",
                "text/plain", "application/xml")

# Each module exports `routes` (a RouteTableDef) and `OPENAPI` ({path: {method: operation}}) and nothing else
# that the app needs: every part they use is a typed attribute of `Services`. Later subsystems add their module here.
API_MODULES = [
    "fieldcomms.ops",
    "fieldcomms.api.health",
    "fieldcomms.api.users",
    "fieldcomms.api.events",
    "fieldcomms.api.updates",
    "fieldcomms.api.photos",
    "fieldcomms.api.similar",
    "fieldcomms.api.media_files",
    "fieldcomms.api.rumours",
    "fieldcomms.api.reports",
    "fieldcomms.api.feeds",
    "fieldcomms.web",
    "fieldcomms.api.zones",
    "fieldcomms.api.positions",
    "fieldcomms.api.alerts",
    "fieldcomms.api.push",
    "fieldcomms.api.map",
    "fieldcomms.api.stream",
    "fieldcomms.api.chain",
    "fieldcomms.api.evidence",
    "fieldcomms.api.decisions",
    "fieldcomms.api.openapi",
]


def problem_response(status: int, title: str, detail: str, *, type_: str | None = None,
                     errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> web.Response:
    from .api.common import dumps

    body: dict[str, object] = {"type": type_ or "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return web.Response(body=dumps(body), status=status, content_type=PROBLEM_JSON, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as problem+json: ours, aiohttp's (404 route, 405, 413) and unexpected ones."""
    try:
        return await handler(request)
    except ApiError as exc:
        problem = exc.to_problem()
        return problem_response(exc.status, exc.title, exc.detail, type_=problem["type"], errors=exc.errors or None,
                                headers=exc.headers or None)
    except HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in (hdrs.ALLOW, hdrs.RETRY_AFTER)}
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            detail = f"No such resource: {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed here; allowed: {exc.headers.get(hdrs.ALLOW, '')}"
        return problem_response(exc.status, exc.reason, detail, headers=headers)
    except RequestPayloadError:
        # The body's framing or Content-Encoding is broken (bad gzip, a bad chunk): the client's mistake.
        return problem_response(400, "Bad request",
                                "The request body cannot be read: its framing or Content-Encoding is broken.")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "Internal server error", "Something went wrong on our side; it has been logged.")


@web.middleware
async def http_cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ETag/If-None-Match and Cache-Control on GETs; gzip for text formats when the client accepts it."""
    response = await handler(request)
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD) or type(response) is not web.Response:
        return response
    body = response.body
    if response.status != 200 or not isinstance(body, bytes):
        return response
    if hdrs.ETAG not in response.headers:
        response.headers[hdrs.ETAG] = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    etag = response.headers[hdrs.ETAG]
    if hdrs.CACHE_CONTROL not in response.headers:
        public = request.get(VIEWER) is None and "Authorization" not in request.headers
        response.headers[hdrs.CACHE_CONTROL] = "public, max-age=5" if public else "private, no-cache"
    compressible = (response.content_type or "") in COMPRESSIBLE
    # The representation depends on Accept-Encoding whether or not this one was compressed: a shared cache
    # must not hand a gzip body to a client that did not ask for it (RFC 9110 s12.5.5). A 304 carries the
    # same Vary as the 200 it stands for.
    _vary(response, "Authorization", *((hdrs.ACCEPT_ENCODING,) if compressible else ()))
    inm = request.headers.get(hdrs.IF_NONE_MATCH)
    if inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        keep = {k: v for k, v in response.headers.items() if k in (hdrs.ETAG, hdrs.CACHE_CONTROL, hdrs.VARY)}
        return web.Response(status=304, headers=keep)
    if compressible and len(body) > 512 and accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _vary(response: web.StreamResponse, *names: str) -> None:
    """One Vary header listing `names` after whatever the handler named, each once."""
    have = [v.strip() for value in response.headers.getall(hdrs.VARY, ()) for v in value.split(",") if v.strip()]
    lowered = {v.lower() for v in have}
    response.headers[hdrs.VARY] = ", ".join(have + [n for n in names if n.lower() not in lowered])


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` allows gzip (RFC 9110 s12.5.3): `gzip` (or `x-gzip`) with a q above 0, or,
    where gzip is not named, `*` with a q above 0. `gzip;q=0` means "not gzip"."""
    named: float | None = None
    star: float | None = None
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # an unreadable weight is not consent
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            star = q
    if named is not None:
        return named > 0
    return star is not None and star > 0


WRITE_ATTEMPTS = 30  # ten officers amplifying one update at once: each round, at least one wins per worker


@web.middleware
async def write_retry_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With PostgreSQL, a write that lost a compare-and-set race to another worker (WriteConflict, raised once
    this worker has caught up) runs again, now reading the newer version: concurrent amplifications,
    acknowledgements or status changes on different workers all count. Only a request that has stored nothing
    yet and whose body can be read again is re-run; else the client gets 409 and sends it again."""
    if request.method in (hdrs.METH_GET, hdrs.METH_HEAD):
        return await handler(request)
    done = [0]
    token = WRITES_DONE.set(done)
    try:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await handler(request)
            except WriteConflict as exc:
                rerunnable = BODY in request or not request.body_exists
                if done[0] or not rerunnable or attempt == WRITE_ATTEMPTS - 1:
                    raise Conflict(f"{exc} while this request ran; send it again.") from None
                await asyncio.sleep(random.random() * 0.002 * min(attempt + 1, 10))  # spread the next round
        raise AssertionError("unreachable")
    finally:
        WRITES_DONE.reset(token)


def load_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in API_MODULES]


def max_request_bytes(settings: Settings) -> int:
    """The largest request body: a multipart update with its photos. JSON bodies are capped per handler."""
    return settings.max_photos_per_update * (settings.max_photo_bytes + 64 * 1024) + settings.max_body_bytes


def create_app(settings: Settings, services: Services | None = None) -> web.Application:
    """The web application over `services` (built from the settings when not given). The app opens and closes
    the services with itself: their lifecycle is one cleanup context, and streams end on shutdown."""
    from . import ops
    from . import web as pages

    services = services or build_services(settings)
    app = web.Application(middlewares=[ops.observe_middleware, error_middleware, http_cache_middleware,
                                       auth_middleware, write_retry_middleware],
                          client_max_size=max_request_bytes(settings))
    app[SETTINGS] = settings
    app[SERVICES] = services

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    async def end_streams(app: web.Application) -> None:
        await services.shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    ops.install(app)
    pages.install(app)
    for module in load_modules():
        app.router.add_routes(module.routes)
    return app
