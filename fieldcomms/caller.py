"""Who the request being handled is for, and the check the store makes with it right before every write.

The auth middleware names the caller (`CALLER`) for the whole request; `caller_still_valid`, installed as the
store's write guard, refuses a write on behalf of a caller revoked, or whose role changed, since their request
began: an upload begun before a revocation must not post after it. It runs on the loop with nothing awaited
between it and the write. Plain Python, no aiohttp, so the store's owner can install it.
"""

from __future__ import annotations

from contextvars import ContextVar

from .errors import Unauthorized
from .store.memory import MemoryView
from .visibility import Viewer

CALLER: ContextVar[Viewer | None] = ContextVar("fieldcomms_caller", default=None)


def caller_still_valid(store: MemoryView) -> None:
    viewer = CALLER.get()
    if viewer is None:
        return
    user = store.get("users", viewer.id)
    if user is None or user.get("revoked") or user.get("role") != viewer.role:
        raise Unauthorized("The token was revoked, or its role changed, while this request ran; nothing was stored.")
