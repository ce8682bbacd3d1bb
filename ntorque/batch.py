"""Pure: a batch enqueue's JSON array into validated tasks, each item read as
a single enqueue would read its query, headers and body. All or nothing: any
bad item makes the whole batch a 400 that names every bad item's field."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from . import intake, jsonbody
from .errors import InvalidBatch, InvalidRequest
from .tasks import Keyed, NewTask

MAX_ITEMS = 1000
QUERY_FIELDS = (
    "url", "method", "timeout", "delay", "eta", "retries", "backoff", "callback", "queue",
)  # fmt: skip
OTHER_FIELDS = ("body", "body_base64", "content_type", "charset", "headers", "idempotency_key")
MAX_ERRORS = 100  # errors named in one answer

Item = tuple[NewTask, Keyed | None]
ReadItem = Callable[[dict[str, str], dict[str, str], bytes], NewTask]


def parse(body: bytes, read_item: ReadItem, max_body_bytes: int) -> list[Item]:
    """The batch's tasks and idempotency keys, in order. read_item is the
    single enqueue's validation (query, headers, body) -> NewTask; each
    task's body is bounded as a single enqueue's is (max_body_bytes)."""
    items = jsonbody.loads(body, "the body must be a JSON array of tasks")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("the body must be a JSON array of tasks, not empty")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"a batch holds at most {MAX_ITEMS} tasks")
    parsed: list[Item] = []
    errors: list[dict[str, object]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            spec, keyed = _item(item, read_item, max_body_bytes)
            if keyed is not None and keyed.key in seen:
                raise InvalidRequest(
                    "this idempotency_key is in the batch twice", "idempotency_key"
                )
        except InvalidRequest as error:
            errors.append({"index": index, "field": error.field, "error": error.message})
            continue
        if keyed is not None:
            seen.add(keyed.key)
        parsed.append((spec, keyed))
    if errors:
        raise InvalidBatch(errors[:MAX_ERRORS])
    return parsed


def read(item: Any, read_item: ReadItem, max_body_bytes: int) -> Item:
    """One batch item, checked as parse() checks each (a bulk import's line)."""
    return _item(item, read_item, max_body_bytes)


def _item(item: Any, read_item: ReadItem, max_body_bytes: int) -> Item:
    if not isinstance(item, dict):
        raise InvalidRequest("each task must be a JSON object")
    _known(item, (*QUERY_FIELDS, *OTHER_FIELDS))
    query = {name: _scalar(item[name], name) for name in QUERY_FIELDS if item.get(name) is not None}
    headers = _headers(item)
    body = _body(item)
    if len(body) > max_body_bytes:
        raise InvalidRequest(f"the body is larger than {max_body_bytes} bytes", field="body")
    spec = read_item(query, headers, body)
    key = intake.idempotency_key(_text(item.get("idempotency_key"), "idempotency_key"))
    return spec, None if key is None else Keyed(key, intake.fingerprint(spec))


# A schedule's task is a batch item less what a tick decides: when it is due,
# and (made once per tick already) an idempotency key.
TEMPLATE_FIELDS = tuple(
    name
    for name in (*QUERY_FIELDS, *OTHER_FIELDS)
    if name not in ("delay", "eta", "idempotency_key")
)


def template(item: Any, read_item: ReadItem, max_body_bytes: int) -> NewTask:
    """A schedule's task template, read as a batch item is."""
    if not isinstance(item, dict):
        raise InvalidRequest("task must be a JSON object (a task as a batch takes it)", "task")
    _known(item, TEMPLATE_FIELDS)
    spec, _ = _item(item, read_item, max_body_bytes)
    return spec


def _known(item: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(item) - set(fields))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0][:40]!r}", field=unknown[0][:40])


def _headers(item: dict[str, Any]) -> dict[str, str]:
    """The item's content type and pass-through headers, as an enqueue sends them."""
    headers = {}
    content_type = _text(item.get("content_type"), "content_type")
    charset = _text(item.get("charset"), "charset")
    if content_type or charset:
        kind = content_type or intake.DEFAULT_CONTENT_TYPE
        headers["Content-Type"] = f"{kind}; charset={charset}" if charset else kind
    passed = item.get("headers", {})
    if not isinstance(passed, dict):
        raise InvalidRequest("headers must be an object of names and values", field="headers")
    for name, value in passed.items():
        text = _text(value, "headers") or ""
        if not _latin1(text):  # what an HTTP header carries, as a single enqueue's does
            shown = repr(name[:60])
            raise InvalidRequest(f"header {shown} must be Latin-1 text", field="headers")
        headers[intake.HYPHEN_PREFIX + name] = text
    return headers


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _body(item: dict[str, Any]) -> bytes:
    text, encoded = item.get("body"), item.get("body_base64")
    if text is not None and encoded is not None:
        raise InvalidRequest("give body or body_base64, not both", field="body_base64")
    if encoded is not None:
        try:
            return base64.b64decode(_text(encoded, "body_base64") or "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("body_base64 is not valid base64", field="body_base64") from None
    charset = _text(item.get("charset"), "charset")
    if charset:  # checked before it is used: an odd name raised ValueError here
        with intake.blame("charset"):
            intake.check_charset(charset)
    charset = charset or intake.DEFAULT_CHARSET
    try:
        return (_text(text, "body") or "").encode(charset)
    except LookupError:  # a codec, not a text encoding (rot13, base64)
        raise InvalidRequest(f"{charset} is not a text encoding", field="charset") from None
    except UnicodeError:  # not only UnicodeEncodeError: idna raises its parent
        raise InvalidRequest(f"the body cannot be encoded in {charset}", field="body") from None


def _scalar(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"{field} must be text or a number", field=field)
    return str(value)


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be text", field=field)
    return value
