"""The pieces every path of the document is built from: references,
answers, error answers, parameters, and the server's bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = "application/json"
ERRORS = {
    400: "Malformed or out of bounds; `field` names the input at fault.",
    401: "No valid API key.",
    403: "Not allowed: the metrics need an admin application's key.",
    404: "Missing, or another application's.",
    409: "The resource's state forbids it.",
    413: "The body is too large.",
    415: "The body's media type is not one this route reads.",
    422: "Contradicts an earlier request: an idempotency key reused with another body.",
    429: "Too many failed authentications from this address; see Retry-After.",
    503: "The database is away, and nothing was changed; see Retry-After.",
}
KEYED = (400, 401, 429, 503)  # what any operation that takes a key can answer
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}


@dataclass(frozen=True)
class Bounds:
    """The server's settings that bound what a request may ask for."""

    max_retries: int = 36
    max_timeout_s: float = 7200.0
    max_schedule_ahead_s: float = 30 * 86400.0


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def blank_or(schema: dict[str, Any]) -> dict[str, Any]:
    """A value whose blank ("") means "not given"."""
    return {"anyOf": [schema, {"const": ""}]}


def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors_component() -> dict[str, Any]:
    made = {f"E{status}": answer(text, ref("Error")) for status, text in ERRORS.items()}
    for status in (429, 503):
        made[f"E{status}"]["headers"] = RETRY_AFTER
    return made


def operation(
    summary: str,
    ok: dict[str, Any],
    *statuses: int,
    params: list[dict[str, Any]] | None = None,
    request: dict[str, Any] | None = None,
    keyed: bool = True,
) -> dict[str, Any]:
    """One operation: its answers (the keyed ones' errors added), its key."""
    codes = sorted({*(KEYED if keyed else ()), *statuses})
    made: dict[str, Any] = {
        "summary": summary,
        "security": [{"ApiKey": []}] if keyed else [],
        "responses": {**ok, **{str(s): {"$ref": f"#/components/responses/E{s}"} for s in codes}},
    }
    if params:
        made["parameters"] = params
    if request:
        made["requestBody"] = request
    return made


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def in_path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def actions(*names: str) -> dict[str, Any]:
    return in_path("action", {"enum": list(names)})
