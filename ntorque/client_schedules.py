"""The schedule routes' requests as data, for both clients (see client_requests:
a `Request` carries how its answer is read). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Required, TypedDict
from urllib.parse import urlencode

from .client_requests import JSON, Request, batch_item, json_object, nothing


class ScheduleTask(TypedDict, total=False):
    """The task each tick enqueues: a batch item's fields, less delay, eta
    and idempotency_key (a tick is its time and its key)."""

    url: Required[str]
    body: str | bytes  # bytes are sent as body_base64
    body_base64: str
    charset: str
    method: str
    timeout: int
    content_type: str
    headers: Mapping[str, str]  # passed through to the hook
    retries: int
    backoff: Literal["linear", "exponential"]
    callback: str
    queue: str


class _Rule(TypedDict, total=False):
    name: str | None  # None clears it
    cron: str  # 5 fields, or 6 with seconds first
    timezone: str  # an IANA name, with cron (default UTC)
    every_s: float  # instead of cron: a tick every this many seconds
    catch_up: Literal["latest", "all", "none"]  # what a gap (a pause, an outage) makes
    paused: bool


class NewSchedule(_Rule, total=False):
    """What create_schedule() sends: cron (with timezone) or every_s, and the task."""

    task: Required[ScheduleTask]


class ScheduleChanges(_Rule, total=False):
    """What update_schedule() sends: the fields given change; a task replaces
    the template; a new rule ticks from now."""

    task: ScheduleTask


def schedules(limit: int | None, cursor: str | None) -> Request[dict[str, Any]]:
    """GET /schedules: one page, newest first, {"schedules": [...], "next_cursor": ...}."""
    given = {"limit": limit, "cursor": cursor}
    query = urlencode({name: value for name, value in given.items() if value is not None})
    return Request("GET", "/schedules" + (f"?{query}" if query else ""), json_object)


def schedule(schedule_id: int) -> Request[dict[str, Any]]:
    """GET /schedules/<id>: with its next_ticks and last_tasks."""
    return Request("GET", _path(schedule_id), json_object)


def create_schedule(fields: NewSchedule) -> Request[dict[str, Any]]:
    return Request("POST", "/schedules", json_object, _body(fields), {"Content-Type": JSON})


def update_schedule(schedule_id: int, changes: ScheduleChanges) -> Request[dict[str, Any]]:
    """PATCH /schedules/<id>: None is sent as null (a name cleared)."""
    return Request("PATCH", _path(schedule_id), json_object, _body(changes), {"Content-Type": JSON})


def schedule_action(schedule_id: int, verb: str) -> Request[dict[str, Any]]:
    """POST /schedules/<id>/pause or /resume: the schedule's JSON."""
    return Request("POST", f"{_path(schedule_id)}/{verb}", json_object, b"")


def delete_schedule(schedule_id: int) -> Request[None]:
    """DELETE /schedules/<id>: 204 (the tasks it made stay)."""
    return Request("DELETE", _path(schedule_id), nothing)


def _path(schedule_id: int) -> str:
    return f"/schedules/{int(schedule_id)}"


def _body(fields: Mapping[str, Any]) -> bytes:
    sent = dict(fields)
    if "task" in sent:
        sent["task"] = batch_item(sent["task"])
    return json.dumps(sent).encode("utf-8")
