"""Pure: the listing's filters, limit and cursor, read from a query string or
a JSON object, each bounded, each bad one a 400 naming it."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequest
from .queues import QUEUE_NAME_RULE, check_name
from .schedule import parse_time
from .tasks import Status, TaskFilter

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_URL_PREFIX = 2048
CURSOR = re.compile(r"t[0-9]{1,19}")
MAX_TASK_ID = 2**63 - 1  # a BIGINT
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FILTERS = ("status", "queue", "url_prefix", "created_after", "created_before", "schedule_id")
PAGING = ("limit", "cursor")


def task_filter(values: Mapping[str, Any], app_id: int | None) -> TaskFilter:
    """The filters of a listing or a bulk action; unknown names are refused,
    so a misspelt filter never widens a bulk cancel to every task."""
    unknown = sorted(set(values) - set(FILTERS) - set(PAGING))
    if unknown:
        raise InvalidRequest(f"unknown filter {unknown[0][:40]!r}", field=unknown[0][:40])
    return TaskFilter(
        app_id=app_id,
        status=_status(values.get("status")),
        url_prefix=_url_prefix(values.get("url_prefix")),
        queue=_queue(values.get("queue")),
        created_after=_time(values.get("created_after"), "created_after"),
        created_before=_time(values.get("created_before"), "created_before"),
        schedule_id=_schedule_id(values.get("schedule_id")),
    )


def _schedule_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidRequest("schedule_id must be a schedule's id", field="schedule_id")
    return int(text)


def limit(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest("limit must be a whole number", field="limit") from None
    if not 1 <= number <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return number


def cursor(task_id: int) -> str:
    """An opaque cursor: the page after it starts below this task."""
    return base64.urlsafe_b64encode(f"t{task_id}".encode()).decode().rstrip("=")


def before_id(value: Any) -> int | None:
    """The task id a cursor stands for; None for the first page."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    # ASCII digits only ("²".isdigit() too), and an id the database can hold
    if not CURSOR.fullmatch(decoded) or int(decoded[1:]) > MAX_TASK_ID:
        raise InvalidRequest("cursor is not one this server gave", field="cursor")
    return int(decoded[1:])


def _status(value: Any) -> Status | None:
    if value is None or value == "":
        return None
    try:
        return Status(str(value))
    except ValueError:
        names = ", ".join(status.value for status in Status)
        raise InvalidRequest(f"status must be one of {names}", field="status") from None


def _queue(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(QUEUE_NAME_RULE, field="queue")
    return check_name(value)


def _url_prefix(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_PREFIX:
        raise InvalidRequest(
            f"url_prefix must be text of at most {MAX_URL_PREFIX} characters", field="url_prefix"
        )
    if CONTROL.search(value):  # no url holds one; PostgreSQL text cannot hold NUL
        raise InvalidRequest("url_prefix must not contain control characters", field="url_prefix")
    return value


def _time(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidRequest(f"{field} must be a time", field=field)
    return parse_time(value, field)
