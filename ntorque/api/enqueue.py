"""Enqueue: one task the seed's way (POST /?url=...), or a batch of them as
a JSON array (POST /tasks). An Idempotency-Key makes a repeat answer the
task it made the first time."""

from __future__ import annotations

import functools

from .. import __version__, batch, intake
from ..errors import KeyReused
from ..tasks import Keyed, NewTask, Task
from .base import BodyHandler

BATCH_BODY_FACTOR = 10  # a batch's JSON may be this many times a task's body limit
NO_APP = 0  # the idempotency scope of an unauthenticated server


class RootHandler(BodyHandler):
    """GET / is a banner; POST /?url=... enqueues a task."""

    def body_limit(self) -> int:
        return self.api_options.max_body_bytes

    def get(self) -> None:
        if "text/html" in self.request.headers.get("Accept", ""):  # a browser: the console
            self.redirect("/console")
            return
        self.send_json(200, {"message": "ntorque is installed and running", "version": __version__})

    async def post(self) -> None:
        if self._finished:  # the body was too large: answered already
            return
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        spec = self.read_task(await self.policy(), query, self.request.headers, self.body)
        key = intake.idempotency_key(self.request.headers.get("Idempotency-Key"))
        if key is None:
            self.created(await self.queue.enqueue(spec))
            return
        ((task, replayed),) = await self.enqueue_keyed(
            [(spec, Keyed(key, intake.fingerprint(spec)))]
        )
        if replayed:
            self.set_header("Idempotent-Replayed", "true")
        self.created(task, 200 if replayed else 201)

    def on_finish(self) -> None:
        if self.request.method == "POST" and self.get_status() >= 400:
            self.queue.metrics.enqueue_failed(self.get_status())

    def created(self, task: Task, status: int = 201) -> None:
        self.set_header("Location", f"{self.request.protocol}://{self.request.host}/task/{task.id}")
        self.send_json(status, task.to_json())

    async def enqueue_keyed(
        self, items: list[tuple[NewTask, Keyed | None]]
    ) -> list[tuple[Task, bool]]:
        """Store tasks, all or nothing, honouring their idempotency keys."""
        scope = self.app_id or NO_APP
        specs, keyed = [spec for spec, _ in items], [key for _, key in items]
        try:
            return await self.queue.enqueue_keyed(specs, keyed, scope)
        except KeyReused as reused:
            if len(items) == 1:
                raise
            message = f"task {reused.index} of the batch: {reused.message}"
            raise KeyReused(reused.index, message) from None


class BatchHandler(RootHandler):
    """POST /tasks: a JSON array of tasks, stored in one transaction or not at all."""

    def body_limit(self) -> int:
        return self.api_options.max_body_bytes * BATCH_BODY_FACTOR

    async def post(self) -> None:
        if self._finished:
            return
        read_item = functools.partial(self.read_task, await self.policy())
        items = batch.parse(self.body, read_item, self.api_options.max_body_bytes)
        results = await self.enqueue_keyed(items)
        self.send_json(201, {"tasks": [task.to_json() for task, _ in results]})
