"""The HTTP server around the app: connection deadlines, protocol limits, errors as problem+json, shutdown.

aiohttp bounds the size of a request's headers but sets no deadline for reading them: a client that opens
connections and sends a header byte every few seconds (slowloris), or nothing at all, holds each connection,
and its file descriptor, for as long as it likes. `GuardedRequestHandler` adds the deadlines a public server
needs, in the manner of nginx's `client_header_timeout` and Go's `ReadHeaderTimeout`:

- headers: a request's headers must be complete `header_timeout_s` after the connection opens, or, on a
  kept-alive connection, after the first byte of the next request; else the connection is closed (with a
  408 if the client had started a request);
- idle: a kept-alive connection with no request in progress is closed after `keepalive_timeout_s`
  (aiohttp's own timer; its default is an hour);
- body: a request body that goes `body_timeout_s` without a byte arriving closes the connection. Time when
  the server itself has stopped reading (the handler has not taken the bytes yet) does not count.

A request whose headers are complete is no longer timed, so a live stream (which may run for hours) is
never cut by these deadlines: the broker watches streams itself.

Errors that aiohttp's parser answers on its own (a header too long, too many headers, a malformed request
line) never reach the app's middlewares; `handle_error` renders them as problem+json like every other
error, and logs them without the request's bytes, which may carry a token.

Shutdown (`FieldcommsRunner.cleanup`, aiohttp's order): stop listening; close idle connections; the app's
on_shutdown (the broker ends every stream); wait up to `shutdown_grace_s` for requests in flight, then
cancel what is left; the app's cleanup (the store writes what it has queued and closes).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, BadStatusLine, LineTooLong
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from .app import max_request_bytes, problem_response
from .config import Settings

log = logging.getLogger(__name__)

# aiohttp's defaults, stated here so that they are visible and tested: a request line or header line of at
# most 8190 bytes, at most 128 header lines. A request over them is refused with a 4xx before any handler runs.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128


@dataclass(frozen=True)
class Deadlines:
    header_s: float
    body_s: float

    @classmethod
    def of(cls, settings: Settings) -> Deadlines:
        return cls(header_s=settings.header_timeout_s, body_s=settings.body_timeout_s)


def _problem(status: int, detail: str) -> web.Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    resp = problem_response(status, title, detail)
    resp.force_close()
    return resp


REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%b"
)
REQUEST_TIMEOUT_BODY = (
    b'{"type":"about:blank","title":"Request Timeout","status":408,'
    b'"detail":"The request was not sent in time; the connection is closed."}'
)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with header and body read deadlines (see the module docstring)."""

    __slots__ = ("_deadlines", "_timer", "_header_due", "_body", "_last_read", "_got_bytes")

    def __init__(self, manager: Server, *, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._deadlines = deadlines
        self._timer: asyncio.TimerHandle | None = None
        self._header_due: float | None = None  # set while a request's headers are awaited
        self._body: Any = None  # the StreamReader of a body still arriving
        self._last_read = 0.0
        self._got_bytes = False  # bytes of the awaited request have arrived (a 408 is then worth sending)

    # ---- events ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        now = self._loop.time()
        self._last_read = now
        self._await_headers(now)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if not data:
            return
        now = self._last_read = self._loop.time()
        if self._request_count != count:
            # One or more requests' headers are complete: stop timing headers, and time the newest one's
            # body if it is still arriving.
            self._header_due = None
            self._got_bytes = False
            body = self._messages[-1][1] if self._messages else None
            if body is not None and not body.is_eof():
                self._body = body
                self._schedule(now + self._deadlines.body_s)
            else:
                self._body = None
                self._cancel_timer()
        elif self._header_due is None and not self._request_in_progress and not self._messages \
                and (self._body is None or self._body.is_eof()):
            # The first bytes of the next request on a kept-alive connection: its headers are now timed.
            self._await_headers(now)
            self._got_bytes = True
        elif self._header_due is not None:
            self._got_bytes = True

    # ---- the timer -------------------------------------------------------------------------------------

    def _await_headers(self, now: float) -> None:
        if self._deadlines.header_s <= 0:
            return
        self._header_due = now + self._deadlines.header_s
        self._schedule(self._header_due)

    def _schedule(self, when: float) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None or self._force_close:
            return
        now = self._loop.time()
        if self._header_due is not None:
            if now < self._header_due:
                self._schedule(self._header_due)
                return
            self._expire(send_408=self._got_bytes)
            return
        body = self._body
        if body is None or body.is_eof() or self._deadlines.body_s <= 0:
            self._body = None
            return
        if self._reading_paused:  # the handler has not taken what arrived: not the client's delay
            self._last_read = now
        due = self._last_read + self._deadlines.body_s
        if now < due:
            self._schedule(due)
            return
        self._body = None
        self._expire(send_408=False)  # a handler may be mid-response: no bytes of our own

    def _expire(self, *, send_408: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if send_408 and not self._request_in_progress:
            transport.write(REQUEST_TIMEOUT % (len(REQUEST_TIMEOUT_BODY), REQUEST_TIMEOUT_BODY))
        self._header_due = None
        self.force_close()  # closes the transport; a handler reading the body sees the connection lost

    # ---- errors aiohttp answers itself ----------------------------------------------------------------

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            # A malformed request is the client's problem, and may be an attack: one quiet line, and never
            # the request's bytes (a header line can carry a token).
            log.debug("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        status, detail = _describe(status, exc)
        return _problem(status, detail)


def _describe(status: int, exc: BaseException | None) -> tuple[int, str]:
    if status >= 500:
        return status, "Something went wrong on our side; it has been logged."
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        if isinstance(line, bytes | bytearray | str) and line[:1] in (b"/", "/"):  # the request target
            return 414, f"The request's URL is too long: at most {MAX_LINE_SIZE} bytes."
        return 431, (f"A request line or header is too long: at most {MAX_FIELD_SIZE} bytes each, "
                     f"{MAX_HEADERS} headers.")
    if isinstance(exc, BadHttpMethod):
        return 400, "The request's method is not a valid HTTP method."
    if isinstance(exc, BadStatusLine):
        return 400, "The request line is malformed."
    if isinstance(exc, BadHttpMessage) and "header" in str(exc).lower():
        too_many = "too many" in str(exc).lower()
        return (431 if too_many else 400), (f"Too many headers: at most {MAX_HEADERS}." if too_many
                                            else "A request header is malformed.")
    if isinstance(exc, BadHttpMessage):
        return 400, "The request is malformed HTTP."
    return status, "The request could not be read."


AppHandler = Callable[[BaseRequest], Awaitable[StreamResponse]]


def guard(handler: AppHandler, settings: Settings) -> AppHandler:
    """Around the app: what aiohttp does before (or outside) the app's middlewares, answered as problem+json.

    `Expect` is handled by aiohttp ahead of the middlewares: `100-continue` is granted to any request, and
    anything else is a text/plain 417. Here a request that announces a body larger than we would ever accept
    is refused with 413 before the client is told to send it, and an unknown expectation is a problem+json 417.
    """
    json_limit = settings.max_body_bytes
    any_limit = max_request_bytes(settings)

    async def guarded(request: BaseRequest) -> StreamResponse:
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.strip().lower() != "100-continue":
                return _problem(417, "The only expectation understood is 100-continue.")
            length = request.content_length
            limit = json_limit if request.content_type.endswith("json") else any_limit
            if length is not None and length > limit:
                return _problem(413, f"The body is larger than {limit} bytes.")
        try:
            return await handler(request)
        except HTTPException as exc:
            if exc.status < 400:
                raise
            return _problem(exc.status, exc.reason)

    return guarded


class GuardedServer(Server):
    """aiohttp's connection factory, making `GuardedRequestHandler`s for the guarded app."""

    def __init__(self, plain: Server, settings: Settings) -> None:
        # Built from the Server the app made, with the same request factory and protocol options.
        super().__init__(guard(plain.request_handler, settings), request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)
        self._deadlines = Deadlines.of(settings)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, deadlines=self._deadlines, **self._kwargs)


class FieldcommsRunner(web.AppRunner):
    """`web.AppRunner` with our protocol (deadlines, limits, problem+json errors) and shutdown grace."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(app, handle_signals=False, access_log=None,  # ops.py writes the access log
                         keepalive_timeout=settings.keepalive_timeout_s, shutdown_timeout=settings.shutdown_grace_s,
                         max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE, max_headers=MAX_HEADERS)
        self._settings = settings

    async def _make_server(self) -> Server:
        return GuardedServer(await super()._make_server(), self._settings)


async def wait_for_stop_signal() -> signal.Signals:
    """Until SIGTERM or SIGINT; a second one afterwards ends the process at once (the default action)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: signal.Signals) -> None:
        for s in signals:
            loop.remove_signal_handler(s)
        if not got.done():
            got.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    return await got
