"""Small helpers so each api module can describe its own routes for the OpenAPI document."""

from __future__ import annotations

from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
ERRORS = {"400": PROBLEM, "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "405": PROBLEM, "409": PROBLEM,
          "413": PROBLEM, "415": PROBLEM, "422": PROBLEM, "429": PROBLEM, "500": PROBLEM}


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
) -> dict[str, Any]:
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
    if request_content is not None:
        operation["requestBody"] = {"required": True, "content": request_content}
    elif body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def list_of(item_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "last_seq"],
            "properties": {"items": {"type": "array", "items": item_schema}, "last_seq": {"type": "integer"}}}
