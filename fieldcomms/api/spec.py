"""Small helpers so each api module can describe its own routes for the OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
ERRORS = {"400": PROBLEM, "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "405": PROBLEM, "409": PROBLEM,
          "413": PROBLEM, "415": PROBLEM, "422": PROBLEM, "429": PROBLEM, "500": PROBLEM}


@dataclass(frozen=True)
class Limit:
    """A number in a schema that is a setting (`maxLength: Limit("max_text_chars")`): the served document is
    built from the running server's Settings (`resolve_limits`), so it states the limits the server enforces
    and they are written once, in config.py."""

    setting: str


def resolve_limits(node: Any, settings: Any) -> Any:
    """`node` with every `Limit` replaced by its setting's value (a copy; the module-level dicts are shared)."""
    if isinstance(node, Limit):
        return getattr(settings, node.setting)
    if isinstance(node, dict):
        return {key: resolve_limits(value, settings) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_limits(value, settings) for value in node]
    return node


TEXT_LIMIT = Limit("max_text_chars")
PHOTOS_LIMIT = Limit("max_photos_per_update")


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def query(name: str, schema: dict[str, Any], description: str = "", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def path(name: str, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x20-\\x7e]+$"},
    "description": "A retry with the same key by the same caller returns the first response and creates nothing.",
}

LOCATION_HEADER = {
    "description": "The URL of what was made (RFC 9110 s15.3.2), relative to the server; a replay of the same "
                   "`Idempotency-Key` names the same one. A sighting or a rebuttal names the rumour it changed.",
    "schema": {"type": "string", "format": "uri-reference"},
}

PAGING = [
    query("since", {"type": "integer", "minimum": 0}, "Items changed after this seq, oldest first (sync)."),
    query("before", {"type": "integer", "minimum": 1}, "Page back: items with seq below this, newest first."),
    query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
]


def op(
    summary: str,
    *,
    role: str | None = None,
    ok: str = "200",
    schema: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    description: str = "",
    content_type: str = "application/json",
    idempotent: bool = False,
    request_content: dict[str, Any] | None = None,
    operation_id: str | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """One operation. `operation_id` and `tags` may be given here; otherwise the document takes them from
    `openapi.OPERATION_IDS` and the module's tag (every operation gets both, see `openapi.build_document`)."""
    who = f"Needs the `{role}` role." if role else "Open to the public (a token shows more)."
    operation: dict[str, Any] = {
        "summary": summary,
        "description": (description + "\n\n" if description else "") + who,
        "parameters": list(params or []) + ([IDEMPOTENCY_HEADER] if idempotent else []),
        "responses": dict(ERRORS),
    }
    if role:
        operation["security"] = [{"bearer": []}]
    else:
        operation["security"] = [{}, {"bearer": []}]
    if ok == "204":
        operation["responses"]["204"] = {"description": "Done."}
    elif ok == "304":
        pass
    else:
        operation["responses"][ok] = {
            "description": "OK",
            "content": {content_type: {"schema": schema or {}}},
        }
        if ok == "201":
            operation["responses"][ok]["headers"] = {"Location": LOCATION_HEADER}
    if operation_id is not None:
        operation["operationId"] = operation_id
    if tags is not None:
        operation["tags"] = list(tags)
    if request_content is not None:
        operation["requestBody"] = {"required": True, "content": request_content}
    elif body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def list_of(item_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "last_seq"],
            "properties": {"items": {"type": "array", "items": item_schema}, "last_seq": {"type": "integer"}}}
