"""One task: read it, its attempts, notify it again, cancel it, retry it.
Another application's task is a 404, like a missing one."""

from __future__ import annotations

from ..errors import Conflict
from ..tasks import Task
from .base import BodyHandler, JsonHandler

PAST = {"cancel": "cancelled", "retry": "retried"}


class TaskHandler(BodyHandler):
    async def get(self, task_id: str) -> None:
        await self.authenticate()
        task = await self.owned_task(task_id)
        self.send_json(200, task.to_json())

    async def delete(self, task_id: str) -> None:
        """DELETE cancels (the task and its history stay), as POST .../cancel."""
        await self.authenticate()
        task = await self.owned_task(task_id)
        self.send_json(200, (await act(self, task, "cancel")).to_json())


class AttemptsHandler(BodyHandler):
    async def get(self, task_id: str) -> None:
        await self.authenticate()
        task = await self.owned_task(task_id)
        self.send_json(200, {"task_id": task.id, "attempts": await self.queue.attempts(task.id)})


class PushHandler(BodyHandler):
    async def post(self, task_id: str) -> None:
        task = await self.owned_task(task_id)
        await self.queue.notify(task)
        self.send_json(201, task.to_json())


class ActionHandler(BodyHandler):
    """POST /tasks/<id>/cancel or /retry."""

    async def post(self, task_id: str, action: str) -> None:
        task = await self.owned_task(task_id)
        self.send_json(200, (await act(self, task, action)).to_json())


async def act(handler: JsonHandler, task: Task, action: str) -> Task:
    """Cancel or retry; 409 when the task's state forbids it."""
    changed = await (handler.queue.cancel if action == "cancel" else handler.queue.retry)([task.id])
    if changed:
        return changed[0]
    status = (await handler.queue.get(task.id) or task).status
    allowed = (
        "a pending or in-progress task" if action == "cancel" else "a failed or cancelled task"
    )
    raise Conflict(f"task {task.id} is {status}: only {allowed} can be {PAST[action]}")
