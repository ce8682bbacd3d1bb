"""The console's pages: the queue at a glance, one task, its actions (one
task's, or a filtered view's in bulk), pausing a named queue, login."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import tornado.web

from ..events import summary
from ..queue import Queue
from ..tasks import RETRIABLE, Status, Task
from .viewer import COOKIE, COOKIE_DAYS, login_cookie
from .views import SEARCH_SPAN, Dashboard, dashboard_query, listing, number, visible_task
from .web import ConsoleHandler

log = logging.getLogger(__name__)

BODY_PREVIEW = 4000  # characters of a body shown


class DashboardHandler(ConsoleHandler):
    """GET /console: counts, throughput, the named queues, recent tasks;
    ?status= &queue= &q= &match= &before=, and after a bulk action ?done=
    &matched= &changed= ."""

    async def get(self) -> None:
        assert self.viewer is not None
        asked = dashboard_query(self, self.viewer)
        shown = await listing(self.console.reads, self.console.queue, asked)
        self.page(
            "dashboard.html",
            stats=await self.console.stats.get(self.viewer.scope),
            queues=await self.console.hub.board.rows(self.viewer.namespace),
            tasks=[summary(task) for task in shown.tasks],
            query=shown.query,
            prefix=asked.prefix,
            view=view_args(asked),
            bulk=asked.selection() is not None,
            done=self.bulk_done(),
            asked_before=asked.query.before,
            older=shown.older,
            statuses=[s.value for s in Status],
            span=SEARCH_SPAN,
        )

    def bulk_done(self) -> dict[str, Any] | None:
        """What the bulk action that redirected here did (a notice, nothing more)."""
        action = self.get_query_argument("done", "")
        matched = number(self.get_query_argument("matched", "") or "")
        changed = number(self.get_query_argument("changed", "") or "")
        if action not in BULK_ACTIONS or matched is None or changed is None:
            return None
        return {"action": action, "matched": matched, "changed": changed}


BULK_ACTIONS = ("cancel", "retry")


def view_args(shown: Dashboard) -> str:
    """The query string of the view's filters (no cursor): where a bulk action
    posts, and where it comes back to."""
    query = shown.query
    search = query.search or (str(query.task_id) if query.task_id is not None else "")
    args = {
        "status": query.status,
        "queue": query.queue,
        "q": search,
        "match": "prefix" if shown.prefix else "",
    }
    return urlencode({name: value for name, value in args.items() if value})


class BulkActionHandler(ConsoleHandler):
    """POST /console/tasks/cancel or /retry?<the view's filters> (XSRF-checked):
    every task the view's filter selects, on every page, in the viewer's scope
    (an admin's: all); then back to the view with what it did."""

    async def post(self, action: str) -> None:
        assert self.viewer is not None
        shown = dashboard_query(self, self.viewer)
        selection = shown.selection()
        if selection is None:
            raise tornado.web.HTTPError(
                400, "bulk actions need a state or queue filter, or a url starts-with search"
            )
        matched, changed = await self.console.queue.bulk(selection, action)
        log.info(
            "console bulk %s app=%s matched=%s changed=%s",
            action,
            selection.app_id,
            matched,
            changed,
        )
        done = urlencode({"done": action, "matched": matched, "changed": changed})
        back = view_args(shown)
        self.redirect(f"/console?{back}&{done}" if back else f"/console?{done}", status=303)


class QueueActionHandler(ConsoleHandler):
    """POST /console/queues/<name>/pause or /resume?<the view's filters>
    (XSRF-checked): a queue of the viewer's own namespace, as the API's pause
    and resume do; then back to the view. The page's script posts it in the
    background and the socket brings the change."""

    async def post(self, name: str, action: str) -> None:
        assert self.viewer is not None
        back = view_args(dashboard_query(self, self.viewer))  # a bad one changes nothing
        namespace = self.viewer.namespace
        flow = self.console.queue.flow
        await (flow.pause if action == "pause" else flow.resume)(namespace, name)
        self.console.hub.queues_changed(namespace)
        self.redirect(f"/console?{back}" if back else "/console", status=303)


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
            can_retry=task.status in RETRIABLE,
            can_run_now=task.status is Status.PENDING,
            can_cancel=not task.finished,
            due_in_s=task.due - self.console.queue.clock() if not task.finished else None,
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
