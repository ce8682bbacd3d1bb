"""The schedules page: the viewer's schedules (its own application's, an
admin's too, like the queues; 0 when auth is off) with their rule in words,
next fire times and last outcomes, kept live by the socket; and Pause and
Resume, XSRF-checked console posts that go through the Scheduler as the
API's do (the page never calls the API)."""

from __future__ import annotations

import tornado.web

from .views import schedules_before
from .web import ConsoleHandler


class SchedulesPageHandler(ConsoleHandler):
    """GET /console/schedules?before=<id>: a page of schedules, newest first."""

    async def get(self) -> None:
        assert self.viewer is not None
        before = schedules_before(self)
        shown = await self.console.hub.schedules.page(self.viewer.namespace, before)
        self.page(
            "schedules.html", schedules=shown["schedules"], older=shown["older"], before=before
        )


class ScheduleActionHandler(ConsoleHandler):
    """POST /console/schedules/<id>/pause or /resume?before=<id> (XSRF-checked):
    a schedule of the viewer's own namespace (anyone else's is 404, like a
    missing one); then back to the page. The page's script posts it in the
    background and the socket brings the change."""

    async def post(self, schedule_id: str, action: str) -> None:
        assert self.viewer is not None
        namespace = self.viewer.namespace
        scheduler = self.console.queue.scheduler
        changed = await scheduler.set_paused(namespace, int(schedule_id), action == "pause")
        if changed is None:
            raise tornado.web.HTTPError(404, f"no schedule {schedule_id}")
        self.console.hub.schedules_changed(namespace)
        before = schedules_before(self)
        back = f"?before={before}" if before is not None else ""
        self.redirect(f"/console/schedules{back}", status=303)
