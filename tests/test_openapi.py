"""The served OpenAPI document: version 3.1, responses everywhere, every $ref resolvable."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


async def document(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


def refs(node: Any, where: str = "#") -> list[tuple[str, str]]:
    """(where, $ref) for every reference in the document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.append((where, node["$ref"]))
        for key, value in node.items():
            found.extend(refs(value, f"{where}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(refs(value, f"{where}/{i}"))
    return found


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only references within the document are allowed"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


async def test_is_openapi_3_1(client: TestClient) -> None:
    doc = await document(client)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["paths"]


async def test_every_operation_has_responses_and_a_summary(client: TestClient) -> None:
    doc = await document(client)
    count = 0
    for path, item in doc["paths"].items():
        assert path.startswith("/"), path
        for method, operation in item.items():
            if method not in METHODS:
                continue
            count += 1
            where = f"{method.upper()} {path}"
            assert operation.get("responses"), where
            assert any(code.startswith("2") or code.startswith("3") for code in operation["responses"]), where
            assert operation.get("summary"), where
            for param in operation.get("parameters", []):
                if "$ref" in param:
                    param = resolve(doc, param["$ref"])
                if param["in"] == "path":
                    assert param["required"] is True and "{" + param["name"] + "}" in path, where
            for name in (seg[1:-1].split(":")[0] for seg in path.split("/") if seg.startswith("{")):
                declared = [p for p in operation.get("parameters", []) if p.get("in") == "path"]
                assert name in {p["name"] for p in declared}, f"{where}: path parameter {name} is not declared"
    assert count >= 10


async def test_every_ref_resolves(client: TestClient) -> None:
    doc = await document(client)
    found = refs(doc)
    assert found
    for where, ref in found:
        assert resolve(doc, ref) is not None, where


async def test_security_schemes_are_defined(client: TestClient) -> None:
    doc = await document(client)
    schemes = doc["components"]["securitySchemes"]
    for item in doc["paths"].values():
        for method, operation in item.items():
            if method in METHODS:
                for requirement in operation.get("security", []):
                    assert set(requirement) <= set(schemes)
