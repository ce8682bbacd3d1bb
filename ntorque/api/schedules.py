"""Recurring schedules of the calling application: create (POST /schedules),
list, read (with the next fire times and the last tasks made), change
(PATCH), delete, pause and resume. Each tick enqueues an ordinary task made
from the schedule's template."""

from __future__ import annotations

import functools
from typing import Any

import tornado.web

from .. import batch, schedules, selection
from ..errors import InvalidRequest
from ..scheduler import Scheduler
from ..schedules import Schedule, Template
from ..store.schedules import MAX_SCHEDULES
from .base import BodyHandler


class ScheduleBase(BodyHandler):
    @property
    def scheduler(self) -> Scheduler:
        return self.queue.scheduler

    @property
    def namespace(self) -> int:
        """The caller's schedules (0: requests are not authenticated)."""
        return self.app.id if self.app else 0

    async def template(self, item: Any) -> Template:
        """The body's task, validated as a batch item is; 400 naming task.<field>."""
        read = functools.partial(self.read_task, await self.policy())
        try:
            spec = batch.template(item, read, self.api_options.max_body_bytes)
        except InvalidRequest as error:
            field = "task" if error.field in (None, "", "task") else f"task.{error.field}"
            raise InvalidRequest(error.message, field=field) from None
        return Template.of(spec)

    async def existing(self, schedule_id: str) -> Schedule:
        """The caller's schedule; another application's is 404, like a missing one."""
        found = await self.scheduler.get(self.namespace, int(schedule_id))
        if found is None:
            raise tornado.web.HTTPError(404, f"no schedule {schedule_id}")
        return found

    def send_schedule(self, schedule: Schedule, status: int = 200) -> None:
        self.send_json(status, schedule.to_json(self.queue.clock(), detail=True))

    def json_object(self) -> dict[str, Any]:
        body = self.json_body()
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        return body


class SchedulesHandler(ScheduleBase):
    """GET /schedules lists, newest first; POST /schedules creates one."""

    async def get(self) -> None:
        await self.authenticate()
        query = self.raw_query()
        if unknown := sorted(set(query) - {"name", *selection.PAGING}):
            raise InvalidRequest(f"unknown parameter {unknown[0][:40]!r}", field=unknown[0][:40])
        limit = selection.limit(query.get("limit"))
        before = selection.before_id(query.get("cursor"))
        name = schedules.check_name(query["name"]) if "name" in query else None
        found = await self.scheduler.page(self.namespace, limit + 1, before, name)
        page, now = found[:limit], self.queue.clock()
        self.send_json(
            200,
            {
                "schedules": [schedule.to_json(now) for schedule in page],
                "next_cursor": selection.cursor(page[-1].id) if len(found) > limit else None,
            },
        )

    async def post(self) -> None:
        body = self.json_object()
        settings = schedules.settings_from_json(body, None, self.queue.clock())
        if "task" not in body:
            raise InvalidRequest("task is required: the task each tick enqueues", field="task")
        template = await self.template(body["task"])
        made = await self.scheduler.create(self.namespace, settings, template)
        if made is None:
            raise InvalidRequest(f"an application has at most {MAX_SCHEDULES} schedules")
        self.set_header(
            "Location", f"{self.request.protocol}://{self.request.host}/schedules/{made.id}"
        )
        self.send_schedule(made, 201)


class ScheduleHandler(ScheduleBase):
    """GET, PATCH (change the fields given; a task replaces the template), DELETE."""

    async def get(self, schedule_id: str) -> None:
        await self.authenticate()
        self.send_schedule(await self.existing(schedule_id))

    async def patch(self, schedule_id: str) -> None:
        body = self.json_object()
        current = await self.existing(schedule_id)
        settings = schedules.settings_from_json(body, current.settings, self.queue.clock())
        template = await self.template(body["task"]) if "task" in body else current.template
        changed = await self.scheduler.update(current, settings, template)
        if changed is None:  # deleted meanwhile
            raise tornado.web.HTTPError(404, f"no schedule {schedule_id}")
        self.send_schedule(await self.existing(schedule_id))

    async def delete(self, schedule_id: str) -> None:
        await self.authenticate()
        if not await self.scheduler.delete(self.namespace, int(schedule_id)):
            raise tornado.web.HTTPError(404, f"no schedule {schedule_id}")
        self.set_status(204)
        self.finish()


class ScheduleActionHandler(ScheduleBase):
    """POST /schedules/<id>/pause or /resume."""

    async def post(self, schedule_id: str, action: str) -> None:
        changed = await self.scheduler.set_paused(
            self.namespace, int(schedule_id), action == "pause"
        )
        if changed is None:
            raise tornado.web.HTTPError(404, f"no schedule {schedule_id}")
        self.send_schedule(await self.existing(schedule_id))
