"""The access log: who consulted or disclosed what, and why (Data Protection Act 2018 s.62).

Each entry is an ordinary stored change in the collection "audit", so it is chained like every other change
and survives as long as the deployment. Nothing changes or removes an entry. Audit entries never reach the
public or the live stream: visibility shows them to admins only, and the stream carries no "audit" changes.

Other parts record their accesses through `record_access` alone (answer approval and rejection too)."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..evidence.auditlog import AUDIT
from ..model import new_id, now_str
from ..visibility import Viewer

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]

ACTIONS = ("photo.original.read", "event.export", "event.purge", "user.create", "user.revoke",
           "answer.approve", "answer.reject")
REASON_MIN, REASON_MAX = 3, 500


def cli_actor() -> Doc:
    """The actor of a command run on the server's machine: whoever can run it there holds the data anyway."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return {"id": "cli", "callsign": f"cli:{who}", "role": "admin"}


def actor_of(actor: Viewer | Mapping[str, Any]) -> Doc:
    if isinstance(actor, Viewer):
        return {"id": actor.id, "callsign": actor.callsign, "role": actor.role}
    return {"id": str(actor["id"]), "callsign": str(actor["callsign"]), "role": str(actor["role"])}


def audit_entry(actor: Viewer | Mapping[str, Any], action: str, target: Mapping[str, Any] | tuple[str, str],
                event: str | None, reason: str | None, at: str | None = None) -> Doc:
    if isinstance(target, tuple):
        target = {"type": target[0], "id": target[1]}
    return {"id": new_id("aud"), "at": at or now_str(), "actor": actor_of(actor), "action": action,
            "target": {"type": str(target["type"]), "id": str(target["id"])}, "event": event, "reason": reason}


async def record_access(services: Services, actor: Viewer | Mapping[str, Any], action: str,
                        target: Mapping[str, Any] | tuple[str, str], event: str | None,
                        reason: str | None) -> Doc:
    """Append one access-log entry and return it once durable. `target` is `{"type", "id"}` (or a pair)."""
    return await services.store.append("audit", AUDIT, audit_entry(actor, action, target, event, reason))
