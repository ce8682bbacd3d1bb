"""The console's pages: the queue at a glance, one task, its actions, login."""

from __future__ import annotations

import logging
from typing import Any

import tornado.web

from ..events import summary
from ..queue import Queue
from ..tasks import RETRIABLE, Status, Task
from .viewer import COOKIE, COOKIE_DAYS, login_cookie
from .views import SEARCH_SPAN, dashboard_query, listing, visible_task
from .web import ConsoleHandler

log = logging.getLogger(__name__)

BODY_PREVIEW = 4000  # characters of a body shown


class DashboardHandler(ConsoleHandler):
    """GET /console: counts, throughput, recent tasks; ?status= &q= &before= ."""

    async def get(self) -> None:
        assert self.viewer is not None
        query = dashboard_query(self, self.viewer)
        shown = await listing(self.console.reads, query)
        self.page(
            "dashboard.html",
            stats=await self.console.stats.get(self.viewer.scope),
            tasks=[summary(task) for task in shown.tasks],
            query=shown.query,
            asked_before=query.before,
            older=shown.older,
            statuses=[s.value for s in Status],
            span=SEARCH_SPAN,
        )


class TaskPageHandler(ConsoleHandler):
    """GET /console/task/<id>: the request, every attempt, the actions."""

    async def get(self, task_id: str) -> None:
        task = await owned(self, task_id)
        self.page(
            "task.html",
            task=task.to_json(),
            app_id=task.app_id,
            attempts=await self.console.queue.attempts(task.id),
            body=body_preview(task),
            can_retry=task.status in (*RETRIABLE, Status.PENDING),
            can_cancel=not task.finished,
        )


async def owned(handler: ConsoleHandler, task_id: str) -> Task:
    """The task if the viewer may see it; anyone else's is 404, like a missing one."""
    assert handler.viewer is not None
    task = await visible_task(handler.console.queue, handler.viewer, int(task_id))
    if task is None:
        raise tornado.web.HTTPError(404, f"no task {task_id}")
    return task


def body_preview(task: Task) -> dict[str, Any]:
    """The body's start as text, or None when it is not text in its charset."""
    try:
        text: str | None = task.body[: BODY_PREVIEW * 4].decode(task.charset)[:BODY_PREVIEW]
    except (UnicodeDecodeError, LookupError):
        text = None
    if text is not None and any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        text = None
    cut = text is not None and len(text.encode(task.charset)) < len(task.body)
    return {"size": len(task.body), "text": text, "cut": cut}


class TaskActionHandler(ConsoleHandler):
    """POST /console/task/<id>/retry or /cancel (XSRF-checked), then back to the task."""

    async def post(self, task_id: str, action: str) -> None:
        task = await owned(self, task_id)
        changed = await act(self.console.queue, task, action)
        if changed is None:
            raise tornado.web.HTTPError(409, f"task {task.id} is {task.status}: cannot {action}")
        self.redirect(f"/console/task/{task.id}", status=303)


async def act(queue: Queue, task: Task, action: str) -> Task | None:
    """The API's cancel and retry; retrying a pending task runs it now. The
    changed task, or None when its state forbids the action."""
    if action == "retry" and task.status is Status.PENDING:
        return await queue.run_now(task)
    changed = await (queue.retry if action == "retry" else queue.cancel)([task.id])
    return changed[0] if changed else None


class LoginHandler(ConsoleHandler):
    """GET shows the form; POST takes an API key and sets the signed login cookie."""

    login_required = False

    def get(self) -> None:
        if self.viewer is not None:
            self.redirect("/console")
            return
        self.page("login.html", error="")

    async def post(self) -> None:
        if wait := self.login_wait_s():
            self.set_status(429)
            self.page("login.html", error=f"Too many failed logins: try again in {wait} s.")
            return
        key = self.get_body_argument("key", "").strip()
        app = await self.console.authenticator.app_for_key(key)
        if app is None:
            self.login_failed()
            self.set_status(401)  # no valid key, as the API answers
            self.page("login.html", error="That API key is not valid.")
            return
        digest = await self.console.authenticator.hasher.hash(key)
        signed = login_cookie(self.console.cookie_secret, app.id, digest)
        self.set_cookie(COOKIE, signed, expires_days=COOKIE_DAYS)
        log.info("console login app=%s", app.id)
        self.redirect("/console", status=303)


class LogoutHandler(ConsoleHandler):
    login_required = False

    def post(self) -> None:
        self.clear_cookie(COOKIE)
        self.redirect("/console/login" if self.console.authenticate else "/console", status=303)


class StaticHandler(tornado.web.StaticFileHandler):
    """The console's CSS, JavaScript and licences; nothing else of the folder."""

    SERVED = (".css", ".js", ".svg", ".txt")

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not absolute_path.endswith(self.SERVED):
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
