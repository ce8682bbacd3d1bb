"""The rows of new tasks: what an insert writes, and the task it made."""

from __future__ import annotations

from typing import Any

from ..tables import tasks
from ..tasks import NewTask, Status, Task


def task_values(spec: NewTask, now: float) -> dict[str, Any]:
    """The row of a new pending task, due now."""
    return {
        "app_id": spec.app_id,
        "url": spec.url,
        "method": spec.method,
        "timeout_s": spec.timeout_s,
        "body": spec.body,
        "content_type": spec.content_type,
        "charset": spec.charset,
        "headers": [list(pair) for pair in spec.headers],
        "status": Status.PENDING.value,
        "retry_count": 0,
        "due": now if spec.due is None else spec.due,
        "created": now,
        "modified": now,
        "retries": spec.retries,
        "backoff": spec.backoff,
        "callback_url": spec.callback_url,
        "callback_of": spec.callback_of,
    }


# Built once, executed with parameters: building `.values(...)` per call costs
# more CPU than the round trip on the enqueue path. Several rows go in one
# multi-row INSERT whose ids come back in the rows' order.
INSERT_TASKS = tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True)


def new_task(spec: NewTask, task_id: int, now: float) -> Task:
    """The stored task an insert of spec made."""
    return Task(
        id=task_id, app_id=spec.app_id, url=spec.url, method=spec.method,
        timeout_s=spec.timeout_s, body=spec.body, content_type=spec.content_type,
        charset=spec.charset, headers=spec.headers, status=Status.PENDING, retry_count=0,
        due=now if spec.due is None else spec.due, created=now, modified=now,
        last_status_code=None, last_error=None, retries=spec.retries, backoff=spec.backoff,
        callback_url=spec.callback_url, callback_of=spec.callback_of,
    )  # fmt: skip
