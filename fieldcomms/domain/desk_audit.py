"""ADAPTER for the lead to connect at merge (wt-desk -> wt-evidence): the access log.

API.md asks that approving and rejecting an answer be recorded in the access log. That log is being built on
another branch as `fieldcomms.domain.audit.record_access(services, actor, action, target, event, reason)`.
Every call from the rumour desk goes through `record` below, written against that signature. Until that module
is on main, the record goes to the application log as one structured line, so nothing is silently dropped.
Once `audit.record_access` exists the import below finds it and this fallback is dead code: delete it then.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("fieldcomms.access")

try:  # pragma: no cover - depends on what is merged
    from .audit import record_access as _record_access  # type: ignore[import-not-found,attr-defined]
except ImportError:  # the access log is not on this branch yet
    _record_access = None


async def record(services: Services, actor: Viewer, action: str, target: str, event: str, reason: str) -> None:
    if _record_access is not None:
        result: Any = _record_access(services, actor, action, target, event, reason)
        if inspect.isawaitable(result):
            await result
        return
    log.info("access actor=%s action=%s target=%s event=%s reason=%r", actor.callsign, action, target, event,
             reason)
