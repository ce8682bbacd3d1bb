"""The shared schemas: what the API answers (Task, Queue, Schedule, Error,
list pages) and what it takes (a task of a batch, queue and schedule
settings). A request object refuses unknown fields, as the handlers do."""

from __future__ import annotations

from typing import Any

from .parts import Bounds, blank_or, nullable, ref

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
TIME = {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601, UTC"}
STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"]
QUEUE_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
# An absolute http(s) url; the target policy may still refuse its host (400).
URL = {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://", "maxLength": 2048}
HEADERS = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"},
    "additionalProperties": {"type": "string", "pattern": "^[\\x20-\\x7e\\t]{0,8192}$"},
}

BURST_NEEDS_RATE = {
    "if": {"required": ["burst"], "properties": {"burst": {"type": "integer"}}},
    "then": {"required": ["rate_per_s"], "properties": {"rate_per_s": {"type": "number"}}},
}
ETA = {
    "type": "string",
    "format": "due-time",
    "description": "ISO 8601 with an offset, or epoch seconds; not with delay",
}
IDEMPOTENCY_KEY = {
    "type": "string",
    "pattern": "^[\\x20-\\x7e]{1,255}$",
    "description": "unique within a batch; a repeat answers the task made the first time",
}


def whole(low: int, high: float) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": int(high)}


def seconds(low: float, high: float) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high}


def new_task(bounds: Bounds) -> dict[str, Any]:
    """One task of a batch: the enqueue's query fields, its body and headers.
    A null field is one not given; so is a blank one where a query's is."""
    return {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "not": {"anyOf": [{"required": ["delay", "eta"]}, {"required": ["body", "body_base64"]}]},
        "properties": {
            **template_fields(bounds),
            "delay": nullable(blank_or(seconds(0, bounds.max_schedule_ahead_s))),
            "eta": nullable(blank_or(ETA)),
            "idempotency_key": nullable(IDEMPOTENCY_KEY),
        },
    }


def query_fields(bounds: Bounds) -> dict[str, Any]:
    """The enqueue's query parameters (delay and eta aside): a blank one is
    not given, where the server reads it so."""
    return {
        "url": URL,
        "method": {"enum": ["POST", "PUT", "PATCH", "DELETE"]},
        "timeout": blank_or(whole(1, bounds.max_timeout_s)),
        "retries": blank_or(whole(1, bounds.max_retries)),
        "backoff": blank_or({"enum": ["linear", "exponential"]}),
        "callback": URL,
        "queue": QUEUE_NAME,
    }


def template_fields(bounds: Bounds) -> dict[str, Any]:
    fields = {name: nullable(schema) for name, schema in query_fields(bounds).items()}
    return {
        **fields,
        "url": URL,
        "body": nullable(STRING),
        "content_type": nullable(
            {"type": "string", "pattern": "^[\\x21-\\x3a\\x3c-\\x7e]{0,255}$"}
        ),
        "charset": nullable({"type": "string", "format": "charset", "maxLength": 40}),
        "body_base64": nullable(
            {
                "type": "string",
                "format": "byte",
                "description": "a binary body; with a charset, its bytes must be text in it",
            }
        ),
        "headers": HEADERS,
    }


def answers() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["status", "error"],
            "properties": {
                "status": INTEGER,
                "error": STRING,
                "field": nullable(STRING),
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "error"],
                        "properties": {
                            "index": INTEGER,
                            "field": nullable(STRING),
                            "error": STRING,
                        },
                    },
                },
            },
        },
        "Task": {
            "type": "object",
            "required": ["id", "queue", "url", "method", "status", "created", "modified", "due"],
            "properties": {
                "id": INTEGER,
                "queue": STRING,
                "url": STRING,
                "method": STRING,
                "status": {"enum": STATUSES},
                "retry_count": INTEGER,
                "timeout": nullable(NUMBER),
                "due": TIME,
                "created": TIME,
                "modified": TIME,
                "last_status_code": nullable(INTEGER),
                "last_error": nullable(STRING),
                "content_type": nullable(STRING),
                "charset": nullable(STRING),
                "headers": {"type": "object", "additionalProperties": STRING},
                "body_size": INTEGER,
                "retries": nullable(INTEGER),
                "backoff": nullable(STRING),
                "callback_url": nullable(STRING),
                "callback_task_id": nullable(INTEGER),
                "callback_of": nullable(INTEGER),
                "schedule_id": nullable(INTEGER),
                "schedule_tick": TIME,
            },
        },
        "TaskList": page("tasks", "Task"),
        "TaskBatch": {
            "type": "object",
            "required": ["tasks"],
            "properties": {"tasks": {"type": "array", "items": ref("Task")}},
        },
        "Queue": {
            "type": "object",
            "required": ["name", "paused", "figures", "created", "modified"],
            "properties": {
                "name": STRING,
                "paused": {"type": "boolean"},
                "max_concurrency": nullable(INTEGER),
                "rate_per_s": nullable(NUMBER),
                "burst": nullable(INTEGER),
                "retries": nullable(INTEGER),
                "backoff": nullable(STRING),
                "timeout": nullable(NUMBER),
                "figures": {
                    "type": "object",
                    "properties": {
                        "pending": INTEGER,
                        "due_now": INTEGER,
                        "in_flight": INTEGER,
                        "completed_5m": INTEGER,
                        "failed_5m": INTEGER,
                        "oldest_due_age_s": nullable(NUMBER),
                    },
                },
                "created": TIME,
                "modified": TIME,
            },
        },
        "QueueList": page("queues", "Queue"),
        "Schedule": {
            "type": "object",
            "required": ["id", "name", "cron", "every_s", "paused", "task", "next_tick"],
            "properties": {
                "id": INTEGER,
                "name": nullable(STRING),
                "cron": nullable(STRING),
                "timezone": nullable(STRING),
                "every_s": nullable(NUMBER),
                "description": STRING,
                "catch_up": {"enum": ["latest", "all", "none"]},
                "paused": {"type": "boolean"},
                "task": {"type": "object"},
                "next_tick": TIME,
                "last_tick": TIME,
                "created": TIME,
                "modified": TIME,
                "next_ticks": {"type": "array", "items": STRING},
                "last_tasks": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ScheduleList": page("schedules", "Schedule"),
    }


def page(plural: str, item: str) -> dict[str, Any]:
    """A list: newest first, keyset-paged by next_cursor (null: the last page)."""
    return {
        "type": "object",
        "required": [plural, "next_cursor"],
        "properties": {
            plural: {"type": "array", "items": ref(item)},
            "next_cursor": nullable(STRING),
        },
    }


def settings(bounds: Bounds) -> dict[str, Any]:
    schedule_fields = {
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "format": "printable"},
        "cron": {"type": "string", "format": "cron", "maxLength": 200},
        "timezone": {"type": "string", "format": "timezone", "maxLength": 64},
        "every_s": seconds(1, 366 * 86400),
        "catch_up": {"enum": ["latest", "all", "none"]},
        "paused": {"type": "boolean"},
        "task": ref("TaskTemplate"),
    }
    queue_fields = {
        "paused": {"type": "boolean"},
        "max_concurrency": nullable(whole(1, 10_000)),
        "rate_per_s": nullable(seconds(0.00001, 10_000)),
        "burst": nullable(whole(1, 10_000)),
        "retries": nullable(whole(1, bounds.max_retries)),
        "backoff": nullable({"enum": ["linear", "exponential"]}),
        "timeout": nullable(whole(1, bounds.max_timeout_s)),
    }
    return {
        "QueueChange": {
            "type": "object",
            "description": "The settings given change; a burst needs a rate_per_s.",
            "additionalProperties": False,
            "properties": queue_fields,
            **BURST_NEEDS_RATE,
        },
        "QueueSettings": {
            "type": "object",
            "description": "Every setting not given is reset; a burst needs a rate_per_s.",
            "additionalProperties": False,
            "properties": queue_fields,
            **BURST_NEEDS_RATE,
        },
        "NewSchedule": {
            "type": "object",
            "description": "cron (with a timezone, UTC by default) or every_s; "
            "task: what each tick enqueues.",
            "additionalProperties": False,
            "required": ["task"],
            "properties": schedule_fields,
            "oneOf": [
                {"required": ["cron"], "not": {"required": ["every_s"]}},
                {
                    "required": ["every_s"],
                    "not": {"anyOf": [{"required": ["cron"]}, {"required": ["timezone"]}]},
                },
            ],
        },
        "ScheduleChange": {
            "type": "object",
            "description": "The fields given change; a task replaces the template.",
            "additionalProperties": False,
            "properties": schedule_fields,
            "not": {
                "anyOf": [{"required": ["cron", "every_s"]}, {"required": ["every_s", "timezone"]}]
            },
        },
        "NewTask": new_task(bounds),
        "TaskTemplate": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "not": {"required": ["body", "body_base64"]},
            "properties": template_fields(bounds),
        },
    }


def schemas(bounds: Bounds) -> dict[str, Any]:
    return {**answers(), **settings(bounds)}
