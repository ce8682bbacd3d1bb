"""Every route of ntorque/api/__init__.py as the document's paths, with its
parameters, bodies, answers and errors."""

from __future__ import annotations

from typing import Any

from .parts import Bounds, actions, answer, blank_or, body, in_path, nullable, operation, query, ref
from .schemas import ETA, IDEMPOTENCY_KEY, QUEUE_NAME, STATUSES, query_fields, seconds, whole

ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}  # another shape: no such route (404)
TASK_ID = in_path("task_id", ID)
SCHEDULE_ID = in_path("schedule_id", ID)
QUEUE = in_path("name", QUEUE_NAME)  # a bad name: 400 saying why
CURSOR = query(
    "cursor", blank_or({"type": "string", "format": "cursor"}), "the page before's next_cursor"
)
LIMIT = query("limit", blank_or(whole(1, 1000)), "default 100")
TIME = {
    "anyOf": [
        {"type": "number", "minimum": -1e11, "maximum": 1e11},
        {"type": "string", "format": "date-time"},
    ],
    "description": "ISO 8601 with an offset, or epoch seconds",
}
# A listing's filters, in a query or a bulk action's body: a blank one is not given.
FILTERS = [
    query("status", blank_or({"enum": STATUSES})),
    query("queue", blank_or(QUEUE_NAME)),
    query("url_prefix", {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]{0,2048}$"}),
    query("created_after", blank_or(TIME)),
    query("created_before", blank_or(TIME)),
    query("schedule_id", blank_or(ID)),
]


def enqueue_query(bounds: Bounds) -> list[dict[str, Any]]:
    fields = query_fields(bounds)
    made = [{**query("url", fields.pop("url"), "the hook to call"), "required": True}]
    made += [query(name, schema) for name, schema in fields.items()]
    made.append(query("delay", blank_or(seconds(0, bounds.max_schedule_ahead_s)), "not with eta"))
    made.append(query("eta", blank_or(ETA), "not with delay"))
    made.append({"name": "Idempotency-Key", "in": "header", "schema": IDEMPOTENCY_KEY})
    return made


def task_paths(bounds: Bounds) -> dict[str, Any]:
    task = answer("The task.", ref("Task"))
    attempts = answer(
        "The task's attempts, in order.",
        {
            "type": "object",
            "required": ["task_id", "attempts"],
            "properties": {"task_id": {"type": "integer"}, "attempts": {"type": "array"}},
        },
    )
    one = {
        "get": operation("Read a task", {"200": task}, 404, params=[TASK_ID]),
        "delete": operation("Cancel a task (it stays)", {"200": task}, 404, 409, params=[TASK_ID]),
    }
    act = operation(
        "Cancel or retry a task",
        {"200": task},
        404,
        409,
        413,
        params=[TASK_ID, actions("cancel", "retry")],
    )
    push = operation("Notify a task again", {"201": task}, 404, 413, params=[TASK_ID])
    read_attempts = operation("A task's attempts", {"200": attempts}, 404, params=[TASK_ID])
    paths: dict[str, Any] = {}
    for alias in ("task", "tasks"):  # the seed's singular stays as an alias
        paths[f"/{alias}/{{task_id}}"] = one
        paths[f"/{alias}/{{task_id}}/{{action}}"] = {"post": act}
        paths[f"/{alias}/{{task_id}}/push"] = {"post": push}
        paths[f"/{alias}/{{task_id}}/attempts"] = {"get": read_attempts}
    counts = {
        "type": "object",
        "required": ["matched", "changed"],
        "properties": {"matched": {"type": "integer"}, "changed": {"type": "integer"}},
    }
    filters = {
        "type": "object",
        "additionalProperties": False,
        "properties": {p["name"]: nullable(p["schema"]) for p in FILTERS},
    }
    paths["/tasks"] = {
        "get": operation(
            "The caller's tasks, newest first",
            {"200": answer("A page of tasks.", ref("TaskList"))},
            params=[*FILTERS, LIMIT, CURSOR],
        ),
        "post": operation(
            "Enqueue a batch of tasks, all or none",
            {"201": answer("The tasks made, in order.", ref("TaskBatch"))},
            413,
            422,
            request=body(
                {"type": "array", "items": ref("NewTask"), "minItems": 1, "maxItems": 1000}
            ),
        ),
    }
    paths["/tasks/{action}"] = {
        "post": operation(
            "Cancel or retry every task the filters match (query, or a JSON body)",
            {"200": answer("How many matched, and how many changed.", counts)},
            404,
            413,
            params=[actions("cancel", "retry"), *FILTERS],
            request=body(filters, required=False),
        )
    }
    return paths


def queue_paths() -> dict[str, Any]:
    queue = answer("The queue, with its live figures.", ref("Queue"))
    return {
        "/queues": {
            "get": operation("The caller's queues", {"200": answer("Queues.", ref("QueueList"))})
        },
        "/queues/{name}": {
            "get": operation("Read a queue", {"200": queue}, 404, params=[QUEUE]),
            "put": operation(
                "Replace its settings",
                {"200": queue},
                413,
                params=[QUEUE],
                request=body(ref("QueueSettings")),
            ),
            "patch": operation(
                "Change the settings given",
                {"200": queue},
                404,
                413,
                params=[QUEUE],
                request=body(ref("QueueChange")),
            ),
            "delete": operation(
                "Delete a queue without unfinished tasks",
                {"204": answer("Deleted.")},
                404,
                409,
                params=[QUEUE],
            ),
        },
        "/queues/{name}/{action}": {
            "post": operation(
                "Pause or resume a queue",
                {"200": queue},
                404,
                413,
                params=[QUEUE, actions("pause", "resume")],
            )
        },
    }


def schedule_paths() -> dict[str, Any]:
    schedule = answer("The schedule, its next ticks and last tasks.", ref("Schedule"))
    return {
        "/schedules": {
            "get": operation(
                "The caller's schedules, newest first",
                {"200": answer("A page of schedules.", ref("ScheduleList"))},
                params=[
                    query(
                        "name",
                        {"type": "string", "minLength": 1, "maxLength": 100, "format": "printable"},
                    ),
                    LIMIT,
                    CURSOR,
                ],
            ),
            "post": operation(
                "Create a schedule (names are unique: 409)",
                {"201": schedule},
                409,
                413,
                request=body(ref("NewSchedule")),
            ),
        },
        "/schedules/{schedule_id}": {
            "get": operation("Read a schedule", {"200": schedule}, 404, params=[SCHEDULE_ID]),
            "patch": operation(
                "Change the fields given",
                {"200": schedule},
                404,
                409,
                413,
                params=[SCHEDULE_ID],
                request=body(ref("ScheduleChange")),
            ),
            "delete": operation(
                "Delete a schedule", {"204": answer("Deleted.")}, 404, params=[SCHEDULE_ID]
            ),
        },
        "/schedules/{schedule_id}/{action}": {
            "post": operation(
                "Pause or resume a schedule",
                {"200": schedule},
                404,
                413,
                params=[SCHEDULE_ID, actions("pause", "resume")],
            )
        },
    }


def other_paths(bounds: Bounds) -> dict[str, Any]:
    banner = {"type": "object", "required": ["message", "version"]}
    probe = {"type": "object", "required": ["status"]}
    text = {"text/plain": {"schema": {"type": "string"}}}
    metrics = operation(
        "Prometheus figures: an admin application's key, or the metrics token",
        {"200": {"description": "The figures.", "content": text}},
        403,
        404,
    )
    metrics["security"] = [{"ApiKey": []}, {"MetricsToken": []}]
    return {
        "/": {
            "get": operation(
                "A banner (a browser goes to the console)",
                {"200": answer("Banner.", banner)},
                keyed=False,
            ),
            "post": operation(
                "Enqueue a task: the query says where and how; the raw body is what the hook gets",
                {
                    "201": answer("The task made; Location names it.", ref("Task")),
                    "200": answer(
                        "An idempotent repeat: the task made the first time.", ref("Task")
                    ),
                },
                413,
                422,
                params=enqueue_query(bounds),
                request={
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    }
                },
            ),
        },
        "/healthz": {
            "get": operation("The process answers", {"200": answer("Alive.", probe)}, keyed=False)
        },
        "/readyz": {
            "get": operation(
                "The database and Redis answer",
                {"200": answer("Ready.", probe), "503": answer("Not ready: which parts.", probe)},
                keyed=False,
            )
        },
        "/metrics": {"get": metrics},
        "/openapi.json": {
            "get": operation(
                "This document", {"200": answer("OpenAPI 3.1.", {"type": "object"})}, keyed=False
            )
        },
    }
