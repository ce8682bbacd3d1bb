"""Named queues of the calling application: list them with their live
figures, set their limits and defaults, pause and resume them, delete an
empty one. Each application has its own namespace of queue names."""

from __future__ import annotations

import tornado.web

from .. import queues
from ..errors import Conflict
from ..flow import Flow
from ..queues import NamedQueue
from .base import BodyHandler


class QueueBase(BodyHandler):
    @property
    def flow(self) -> Flow:
        return self.queue.flow

    @property
    def namespace(self) -> int:
        """The caller's namespace of queue names (0: requests are not authenticated)."""
        return self.app.id if self.app else 0

    def settings_from_body(self, base: queues.QueueSettings | None) -> queues.QueueSettings:
        options = self.api_options
        return queues.settings_from_json(
            self.json_body(),
            max_retries=options.limits.max_retries,
            max_timeout_s=options.max_timeout_s,
            base=base,
        )

    async def existing(self, name: str) -> NamedQueue:
        found = await self.flow.get(self.namespace, queues.check_name(name))
        if found is None:
            raise tornado.web.HTTPError(404, f"no queue {name}")
        return found

    def send_queue(self, named: NamedQueue) -> None:
        self.send_json(200, named.to_json(self.queue.clock()))


class QueuesHandler(QueueBase):
    """GET /queues: every queue of the caller, by name."""

    async def get(self) -> None:
        await self.authenticate()
        found = await self.flow.queues(self.namespace)
        now = self.queue.clock()
        self.send_json(200, {"queues": [q.to_json(now) for q in found], "next_cursor": None})


class QueueHandler(QueueBase):
    """GET, PUT (replace the settings), PATCH (change those given), DELETE."""

    async def get(self, name: str) -> None:
        await self.authenticate()
        self.send_queue(await self.existing(name))

    async def put(self, name: str) -> None:
        settings = self.settings_from_body(base=None)
        named = await self.flow.configure(self.namespace, queues.check_name(name), settings)
        self.send_queue(named)

    async def patch(self, name: str) -> None:
        current = await self.existing(name)
        settings = self.settings_from_body(base=current.settings)
        self.send_queue(await self.flow.configure(self.namespace, current.name, settings))

    async def delete(self, name: str) -> None:
        await self.authenticate()
        deleted = await self.flow.delete(self.namespace, queues.check_name(name))
        if deleted is None:
            raise tornado.web.HTTPError(404, f"no configured queue {name}")
        if not deleted:
            raise Conflict(f"queue {name} has unfinished tasks: cancel them or let them finish")
        self.set_status(204)
        self.finish()


class QueueActionHandler(QueueBase):
    """POST /queues/<name>/pause or /resume."""

    async def post(self, name: str, action: str) -> None:
        checked = queues.check_name(name)
        act = self.flow.pause if action == "pause" else self.flow.resume
        self.send_queue(await act(self.namespace, checked))
