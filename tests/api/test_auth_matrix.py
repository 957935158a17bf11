"""The auth matrix, built from the served OpenAPI document so that every route added later is covered.

For every operation x {no token, unknown token, revoked token, officer, control, admin}:
- no token on an operation that needs a role: 401;
- an unknown or revoked token: 401 on every operation, public ones included;
- a token below the operation's role: 403 (before any 404: the role is checked first);
- a token at or above it (or no token on a public operation): neither 401 nor 403, and never a 5xx.

The document must also describe every route the application serves, and nothing it does not.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import auth, make_user, revoke_user

from fieldcomms.app import create_app
from fieldcomms.config import Settings

ROLES = ("officer", "control", "admin")
RANK = {"officer": 1, "control": 2, "admin": 3}
METHODS = ("get", "put", "post", "delete", "patch", "options", "trace")
ROLE_RE = re.compile(r"Needs the `(officer|control|admin)` role\.")
UNKNOWN_ID = "zz_doesnotexist0"


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    # Many failed tokens and public posts come from one address here: no rate limit may turn a 401 into a 429.
    return Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False,
                    auth_failures_per_minute=1e9, report_rate_per_minute=1e9, report_burst=1_000_000)


def required_role(path: str, method: str, operation: dict[str, Any]) -> str | None:
    """The role an operation needs, from its `security` and description, which must agree."""
    security = operation.get("security")
    found = ROLE_RE.findall(operation.get("description", ""))
    where = f"{method.upper()} {path}"
    if security == [{"bearer": []}]:
        assert len(found) == 1, f"{where}: a protected operation must say 'Needs the `<role>` role.'"
        return str(found[0])
    assert security == [{}, {"bearer": []}], f"{where}: security must be [{{bearer}}] or [{{}}, {{bearer}}]"
    assert not found, f"{where}: a public operation must not claim to need a role"
    return None


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                out.append((path, method, operation))
    return out


def router_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource) or resource.canonical.startswith("/static"):
            continue
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            found.add((resource.canonical, route.method.lower()))
    return found


async def served_document(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


def test_document_and_router_agree(tmp_path: Any) -> None:
    """Checked on the document as the app builds it, without serving: fast feedback for a new route."""
    from fieldcomms.api.openapi import build_document

    app = create_app(Settings(data_dir=str(tmp_path / "data")))
    documented = {(path, method) for path, method, _ in operations(build_document(app))}
    served = router_routes(app)
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented operations the router does not serve"


async def test_served_document_covers_the_router(client: TestClient) -> None:
    documented = {(path, method) for path, method, _ in operations(await served_document(client))}
    served = router_routes(client.app)
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented operations the router does not serve"


async def test_every_operation_declares_its_role(client: TestClient) -> None:
    roles = {(m.upper(), p): required_role(p, m, op) for p, m, op in operations(await served_document(client))}
    # The spine's own routes, as API.md assigns them (a sanity check on the parsing above).
    assert roles[("POST", "/api/v1/users")] == "admin"
    assert roles[("POST", "/api/v1/events")] == "control"
    assert roles[("POST", "/api/v1/events/{tag}/updates")] == "officer"
    assert roles[("GET", "/api/v1/events/{tag}/updates")] is None
    assert roles[("GET", "/healthz")] is None


async def test_auth_matrix(client: TestClient) -> None:
    app = client.app
    tokens: dict[str, str | None] = {"none": None, "unknown": "fc_" + "x" * 43}
    for role in ROLES:
        tokens[role] = await make_user(app, role, f"matrix-{role}")
    tokens["revoked"] = await make_user(app, "admin", "matrix-revoked")
    await revoke_user(app, "matrix-revoked")
    await make_user(app, "officer", "matrix-target")  # the one DELETE /users/{callsign} may end

    resp = await client.post("/api/v1/events", json={"tag": "libdempolicing", "title": "t", "status": "live"},
                             headers=auth(tokens["control"]))
    assert resp.status == 201
    resp = await client.post("/api/v1/events/libdempolicing/updates", json={"text": "x", "visibility": "public"},
                             headers=auth(tokens["officer"]))  # by the matrix officer, so it may retract it
    assert resp.status == 201
    update_id = (await resp.json())["id"]

    def fill(path: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "tag":
                return "libdempolicing"
            if name == "callsign":
                return "matrix-target"
            if name == "id" and path.startswith("/api/v1/updates/{id}"):
                return update_id
            return UNKNOWN_ID  # the id of something a later feature makes: 404 is fine, 401/403 are not
        return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", value, path)

    failures: list[str] = []
    checked = 0
    for path, method, operation in operations(await served_document(client)):
        role = required_role(path, method, operation)
        url = fill(path)
        kwargs: dict[str, Any] = {}
        if "requestBody" in operation:
            kwargs["json"] = {}
        for who, token in tokens.items():
            status = await call(client, method, url, token, kwargs)
            checked += 1
            where = f"{method.upper()} {path} as {who}: {status}"
            if who in ("unknown", "revoked"):
                expected_ok = status == 401
            elif who == "none":
                expected_ok = status == 401 if role else status not in (401, 403)
            elif role is not None and RANK[who] < RANK[role]:
                expected_ok = status == 403
            else:
                expected_ok = status not in (401, 403)
            if not expected_ok or status >= 500:
                failures.append(f"{where} (needs {role or 'nothing'})")
    assert checked >= 6 * 10
    assert not failures, "auth matrix violations:\n" + "\n".join(failures)


async def call(client: TestClient, method: str, url: str, token: str | None, kwargs: dict[str, Any]) -> int:
    """The status only: a stream (text/event-stream) is closed as soon as its headers arrive."""
    async def go() -> int:
        resp = await client.request(method.upper(), url, headers=auth(token), **kwargs)
        try:
            if resp.content_type != "text/event-stream":
                await resp.read()
            return resp.status
        finally:
            resp.close()

    try:
        return await asyncio.wait_for(go(), timeout=10)
    except TimeoutError:
        return 599  # no answer within 10 s: reported as a failure
