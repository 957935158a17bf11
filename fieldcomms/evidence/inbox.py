"""The inbox: how a command (`fieldcomms export`, `fieldcomms purge --due`) reaches a server that holds the
data directory's lock.

The command writes a request file into `data/inbox/` (temporary name, fsync, rename); the server looks there
twice a second, carries the request out through its own store (so the access-log entry or the purge is an
ordinary, chained change), and answers with a `.done` file that the command reads and removes. Whoever may
write the data directory holds the data anyway, so this opens nothing new; no HTTP token is needed, and the
command never touches the journal the server is writing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from ..media import write_atomic

INBOX = "inbox"
REQ, DONE = ".req.json", ".done.json"

Doc = dict[str, Any]


class Inbox:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / INBOX

    # ---- the command's side -----------------------------------------------------------------------------

    def ask(self, request: Doc, timeout_s: float) -> Doc | None:
        """Leave a request and wait for the server's answer; None if none came in time (the request is then
        withdrawn, unless the server has taken it up already)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        request_id = f"{int(time.time() * 1000):015d}-{secrets.token_hex(6)}"
        req, done = self.dir / (request_id + REQ), self.dir / (request_id + DONE)
        write_atomic(req, orjson.dumps(request))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done.exists():
                answer: Doc = orjson.loads(done.read_bytes())
                done.unlink()
                return answer
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            req.unlink()
            return None
        # The server took it up just now: wait for its answer a little longer.
        for _ in range(200):
            if done.exists():
                answer = orjson.loads(done.read_bytes())
                done.unlink()
                return answer
            time.sleep(0.05)
        return None

    # ---- the server's side ------------------------------------------------------------------------------

    def pending(self) -> list[tuple[str, Doc]]:
        """Requests waiting, oldest first; each is taken (renamed) so that it is carried out once."""
        if not self.dir.is_dir():
            return []
        found = []
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(REQ):
                continue
            request_id = name[: -len(REQ)]
            taken = self.dir / (request_id + ".taken")
            try:
                os.rename(self.dir / name, taken)
                data = orjson.loads(taken.read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            found.append((request_id, data))
        return found

    async def answer(self, request_id: str, answer: Doc) -> None:
        import asyncio

        def write() -> None:
            write_atomic(self.dir / (request_id + DONE), orjson.dumps(answer))
            with contextlib.suppress(FileNotFoundError):
                (self.dir / (request_id + ".taken")).unlink()

        await asyncio.to_thread(write)
