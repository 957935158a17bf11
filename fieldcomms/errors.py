"""The exception tree and its one mapping to RFC 9457 problem+json.

Handlers and domain code raise these; the error middleware in app.py renders them. Nothing else
builds an error response, so every failure has the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBLEM_TYPE_BASE = "https://fieldcomms.invalid/problems/"


class ApiError(Exception):
    """A failure the client should see, with an HTTP status and a stable problem type."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self,
        detail: str,
        errors: Sequence[Mapping[str, str]] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = [dict(e) for e in errors] if errors else []
        self.headers = dict(headers or {})

    def to_problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            problem["errors"] = self.errors
        return problem


class BadRequest(ApiError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(ApiError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.", **kw: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="fieldcomms"'}, **kw)


class Forbidden(ApiError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ApiError):
    status, title, slug = 404, "Not found", "not-found"

    def __init__(self, detail: str = "Not found.", **kw: Any) -> None:
        super().__init__(detail, **kw)


class MethodNotAllowed(ApiError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


class Conflict(ApiError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ApiError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(ApiError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class ValidationFailed(ApiError):
    """422: the request was understood but a field is wrong. `errors` names every bad field at once."""

    status, title, slug = 422, "Validation failed", "validation-failed"

    def __init__(self, errors: Sequence[Mapping[str, str]], detail: str | None = None, **kw: Any) -> None:
        if detail is None:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Invalid input."
        super().__init__(detail, errors, **kw)

    @classmethod
    def one(cls, field: str, message: str) -> ValidationFailed:
        return cls([{"field": field, "message": message}])


class TooManyRequests(ApiError):
    status, title, slug = 429, "Too many requests", "too-many-requests"

    def __init__(self, detail: str, retry_after: float, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))}, **kw)


class ServiceUnavailable(ApiError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


class StorageError(Exception):
    """The durable store could not do what it promised (a failed fsync, a corrupt file). Not for clients."""


class DataDirLocked(StorageError):
    """Another process holds the data directory's lock."""


class JournalCorrupt(StorageError):
    """A journal line that cannot be read is followed by lines that can: acknowledged changes would be lost by
    dropping it, so the store refuses to start (see `fieldcomms salvage`)."""

    def __init__(self, segment: str, line: int, offset: int) -> None:
        self.segment, self.line, self.offset = segment, line, offset
        super().__init__(
            f"{segment}: line {line} (byte {offset}) is corrupt and changes follow it; nothing was dropped. "
            "Run `fieldcomms check` to see the damage and `fieldcomms salvage` to keep what can be kept "
            "(it copies the damaged file aside first)")

class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached: writes are refused (fail closed) until the worker reconnects by itself."""

    def __init__(self, detail: str = "The database cannot be reached; nothing was stored. Try again shortly.",
                 retry_after: int = 2, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **kw)


class WriteConflict(StorageError):
    """Another worker changed the item (or took the key) first; nothing was written. The view has caught up
    when this is raised, so running the request again reads the newer version."""


class StoreUnavailable(StorageError):
    """The store cannot be opened (a malformed database URL, a refused connection, a newer schema): said in
    one line to whoever started the server or command."""


class Gone(ApiError):
    """410: it was here and has been erased for good (an original photo after a retention purge)."""

    status, title, slug = 410, "Gone", "gone"
