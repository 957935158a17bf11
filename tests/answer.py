"""Reading an API answer in a test: the status it must have, then its JSON body (or its problem document)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


async def ok(resp: Any, status: int = 200) -> Json:
    """The JSON body of an answer that must have `status` (the body is shown when it has not)."""
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def problem(resp: Any, status: int) -> Json:
    """The problem document of an error answer that must have `status`."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: Json = await resp.json()
    return body
