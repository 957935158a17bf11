"""A small Server-Sent Events client for tests, following the WHATWG HTML "event stream" parsing rules.

Lines end in CRLF, LF or CR (a CR at the end of one network chunk may be followed by the LF of the next);
`field: value` strips one space after the colon; `data` lines join with "\\n"; a blank line dispatches the
event (none if there is no data); `id` containing NUL is ignored; `retry` must be all digits; lines starting
with a colon are comments; an initial BOM is dropped; an event cut off by the end of the stream is discarded.

    async with client.get(url) as resp:
        reader = SSEReader(resp.content)
        event = await reader.next(within=5)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson


class ByteSource(Protocol):
    async def readany(self) -> bytes: ...


@dataclass
class Event:
    type: str
    data: str
    id: str
    retry: int | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class SSEReader:
    source: ByteSource
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    _buffer: bytes = b""
    _started: bool = False
    _eof: bool = False
    _pending_cr: bool = False
    _lines: list[str] = field(default_factory=list)
    _data: list[str] = field(default_factory=list)
    _type: str = ""

    async def next(self, within: float = 5.0) -> Event | None:
        """The next event, or None at the end of the stream; TimeoutError if none arrives `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                while self._lines:
                    event = self._line(self._lines.pop(0))
                    if event is not None:
                        return event
                if self._eof:
                    return None
                await self._fill()

    async def collect(self, count: int, within: float = 5.0) -> list[Event]:
        out: list[Event] = []
        while len(out) < count:
            event = await self.next(within)
            if event is None:
                break
            out.append(event)
        return out

    async def _fill(self) -> None:
        chunk = await self.source.readany()
        if not chunk:
            self._eof = True
            return
        if not self._started:
            self._started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        self._pending_cr = False
        self._buffer += chunk
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if not ends:
                return
            i = min(ends)
            if self._buffer[i:i + 1] == b"\r":
                if i + 1 == len(self._buffer):
                    self._pending_cr = True  # maybe a CRLF whose LF has not arrived yet
                    width = 1
                else:
                    width = 2 if self._buffer[i + 1:i + 2] == b"\n" else 1
            else:
                width = 1
            self._lines.append(self._buffer[:i].decode("utf-8", errors="replace"))
            self._buffer = self._buffer[i + width:]

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event_type = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(event_type or "message", "\n".join(data), self.last_event_id, self.retry)


class _Bytes:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def reader_over(chunks: list[bytes]) -> SSEReader:
    """A reader over fixed chunks, to test the parser itself."""
    return SSEReader(_Bytes(chunks))
