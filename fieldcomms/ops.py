"""Operations: one JSON log line per request and Prometheus metrics at /metrics.

prometheus_client writes the exposition format and histograms correctly; each app has its own registry,
so tests that build many apps do not share counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .api.spec import op
from .errors import Forbidden, Unauthorized
from .keys import SERVICES, VIEWER
from .ratelimit import client_address

access_log = logging.getLogger("fieldcomms.access")

routes = web.RouteTableDef()

METRICS = web.AppKey("metrics", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("fieldcomms_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("fieldcomms_request_seconds", "Time to answer, by route (streams: until closed).",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(self)
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        ctx = self.app[SERVICES]
        store = ctx.store
        yield GaugeMetricFamily("fieldcomms_store_seq", "Newest seq in the store.", value=store.last_seq)
        docs = GaugeMetricFamily("fieldcomms_store_documents", "Documents in the store by collection.",
                                 labels=["collection"])
        for coll in ("events", "updates", "photos", "rumours", "reports", "zones", "positions", "alerts", "users"):
            docs.add_metric([coll], store.count(coll))
        yield docs
        for name, value in store.metrics().items():
            help_text, counter = STORE_METRICS.get(name, (name.replace("_", " ") + ".", False))
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family("fieldcomms_" + name, help_text, value=value)
        yield GaugeMetricFamily("fieldcomms_stream_subscribers", "Open live-stream subscribers.",
                                value=ctx.broker.stats()["subscribers"])

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected fresh each scrape


# Backend figures (StoreProtocol.metrics): help text, and whether it only grows (a counter).
STORE_METRICS: dict[str, tuple[str, bool]] = {
    "store_disk_bytes": ("Journal and snapshot bytes on disk.", False),
    "journal_fsyncs": ("Journal group commits (one fsync each).", True),
    "journal_fsync_seconds": ("Time spent writing and fsyncing the journal.", True),
    "database_up": ("1 while PostgreSQL answers; writes are refused (503) while 0.", False),
    "feed_lag_seconds": ("How long this worker's view has been behind the changes table (0: caught up).", False),
    "feed_committed_seq": ("Newest seq known committed in PostgreSQL.", False),
    "pg_commits": ("PostgreSQL group commits by this worker.", True),
    "pg_commit_seconds": ("Time spent in PostgreSQL write transactions.", True),
    "pg_write_conflicts": ("Writes that lost a compare-and-set race to another worker (then retried).", True),
}


def route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = route_of(request)
        metrics: Metrics = request.app[METRICS]  # type: ignore[assignment]
        metrics.observe(route, request.method, status, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            viewer = request.get(VIEWER)
            # Never the Authorization header, the query string's values or any body: tokens and report
            # contacts must not reach the logs.
            fields = {"method": request.method, "route": route, "path": request.path, "status": status,
                      "ms": round(elapsed * 1000, 2), "callsign": viewer.callsign if viewer is not None else None,
                      # the client, not the proxy in front (X-Forwarded-For from `trusted_proxies` only)
                      "remote": client_address(request, request.app[SERVICES].settings.trusted_proxies)}
            access_log.info("%s %s %s", request.method, request.path, status, extra={JSON_FIELDS: fields})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[SERVICES]
    viewer = request.get(VIEWER)
    address = client_address(request, ctx.settings.trusted_proxies)
    if viewer is None and address not in ctx.settings.metrics_allow:
        raise Unauthorized("Metrics need an admin token, or a request from an address in metrics_allow.")
    if viewer is not None and not viewer.at_least("admin"):
        raise Forbidden("Metrics need the admin role.")
    registry = request.app[METRICS].registry  # type: ignore[attr-defined]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


JSON_FIELDS = "json_fields"  # a log record attribute: fields a line carries beside its message


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for every log: `{"ts", "level", "logger", "msg"}`, then the record's own
    fields (the access log's method, route, status...), then `exc` with the traceback of a logged exception.
    A log collector reads every line the same way, and a message can never break the line (JSON escapes it)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        line.update(getattr(record, JSON_FIELDS, None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str) -> None:
    """Every log (the server's own messages, aiohttp's, Python warnings and the access log) to standard
    error as one JSON object per line (`JsonFormatter`). Standard output keeps the start-up banner for
    whoever started the server (its URLs, the first admin's token)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    access_log.setLevel(level.upper())


def install(app: web.Application) -> None:
    """Metrics for this app; `observe_middleware` must be the app's first middleware (create_app puts it there)."""
    app[METRICS] = Metrics(app)


OPENAPI = {
    "/metrics": {"get": op(
        "Prometheus metrics: requests by route and status, latency histograms, stream subscribers, journal "
        "fsync time, store size.", role="admin", content_type="text/plain",
        schema={"type": "string"},
        description="Also open without a token to the addresses in the `metrics_allow` setting (default none).")},
}
