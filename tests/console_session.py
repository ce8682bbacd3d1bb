"""A console visitor for tests, on the test's own event loop: a session that
keeps cookies, follows no redirects and reads forms, and the live socket.

Every read of the socket has a deadline, and waiting for a message means
waiting for a known one: a stream that stays empty fails the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import tornado.httpclient
import tornado.httputil
import tornado.websocket

from tests.inprocess import LiveNode
from tests.server import FINAL

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')

Socket = tornado.websocket.WebSocketClientConnection
Message = dict[str, Any]


@dataclass
class Page:
    status: int
    headers: tornado.httputil.HTTPHeaders
    text: str

    @property
    def location(self) -> str:
        return str(self.headers.get("Location", ""))

    def cookies(self) -> list[str]:
        return self.headers.get_list("Set-Cookie")


@dataclass
class Session:
    node: LiveNode
    cookies: dict[str, str] = field(default_factory=dict)

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Page:
        sent = {"Accept": "text/html", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if self.cookies:
            sent["Cookie"] = self.cookie_header
        body = urlencode(form).encode() if form is not None else None
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif method == "POST":
            body = b""
        answer = await self.node.client.fetch(
            self.node.base_url + path,
            method=method,
            body=body,
            headers=sent,
            raise_error=False,
            follow_redirects=False,
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        if answer.code == 599:
            raise OSError(f"{method} {path}: {answer.error}")
        page = Page(answer.code, answer.headers, (answer.body or b"").decode())
        for line in page.cookies():
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return page

    async def get(self, path: str, **headers: str) -> Page:
        return await self.request("GET", path, None, **headers)

    async def post(self, path: str, form: dict[str, str] | None = None, xsrf: bool = True) -> Page:
        """A form POST carrying the XSRF token of the page it came from (unless told not to)."""
        data = dict(form or {})
        if xsrf:
            data["_xsrf"] = await self.xsrf_token()
        return await self.request("POST", path, data)

    async def xsrf_token(self) -> str:
        """The token a page's forms carry (the XSRF cookie's value will do once set)."""
        if "_xsrf" in self.cookies:
            return self.cookies["_xsrf"]
        page = await self.get("/console/login")
        match = XSRF_FIELD.search(page.text)
        assert match, page.text
        return match.group(1)

    async def login(self, key: str) -> Page:
        page = await self.post("/console/login", {"key": key})
        assert page.status == 303 and page.location == "/console", (page.status, page.text)
        return page

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


async def logged_in(node: LiveNode, key: str) -> Session:
    session = Session(node)
    await session.login(key)
    return session


@dataclass
class App:
    """An application of its own for a test, and a console session logged in with its key."""

    key: str
    session: Session


async def new_app(node: LiveNode, admin: bool = False) -> App:
    _, key = await node.create_app(admin=admin)
    return App(key, await logged_in(node, key))


async def login_cookie(node: LiveNode, key: str) -> str:
    return (await logged_in(node, key)).cookie_header


# -- a row of the queues panel or of the schedules page ---------------------------


def paused_badge(row: str) -> bool:
    """The row's paused badge shows."""
    badge = re.search(r'<span class="badge paused([^"]*)"', row)
    assert badge, row
    return "hidden" not in badge.group(1)


def shown_form(row: str, action: str) -> bool:
    """The row's pause or resume form shows."""
    form = re.search(rf'<form[^>]*data-\w+-action="{action}"[^>]*>', row)
    assert form, (action, row)
    return "hidden" not in form.group(0)


# -- the live socket -------------------------------------------------------------


async def open_socket(
    node: LiveNode, cookie: str = "", origin: str | None = None, watch: str = ""
) -> Socket:
    """The live socket; `watch` is what the page tells it it shows: "task=<id>"
    for a task page, the dashboard's query ("status=failed&q=x") otherwise."""
    headers = {"Cookie": cookie} if cookie else {}
    headers["Origin"] = origin or node.base_url
    query = f"?{watch}" if watch else ""
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{node.port}/console/socket{query}", headers=headers
    )
    return await tornado.websocket.websocket_connect(request)


async def connected(node: LiveNode, cookie: str, watch: str = "") -> tuple[Socket, Message]:
    """A socket that has joined the hub, and its first message (the counts)."""
    sock = await open_socket(node, cookie, watch=watch)
    first = await read(sock, time.monotonic() + 10)
    assert first["type"] == "stats", first
    return sock, first


async def read(sock: Socket, deadline: float) -> Message:
    """The next message, before the deadline (monotonic), or the test fails."""
    try:
        text = await asyncio.wait_for(sock.read_message(), deadline - time.monotonic())
    except TimeoutError:
        raise AssertionError("no message from the console socket in time") from None
    assert text is not None, "the server closed the socket"
    message: Message = json.loads(text)
    return message


async def read_until(
    sock: Socket, wanted: Callable[[Message], bool], timeout_s: float = 15
) -> list[Message]:
    """Every message up to and including the first wanted one; fails when
    none comes within timeout_s (an empty stream fails too)."""
    deadline = time.monotonic() + timeout_s
    got: list[Message] = []
    while not got or not wanted(got[-1]):
        got.append(await read(sock, deadline))
    return got


def shows(task_id: int, status: str) -> Callable[[Message], bool]:
    """A message that carries the task in that status."""
    return lambda message: any(
        task["id"] == task_id and task["status"] == status for task in message.get("tasks", [])
    )


# -- a task as the API shows it ----------------------------------------------------

Check = Callable[[dict[str, Any]], bool]


def finished(task: dict[str, Any]) -> bool:
    return bool(task["status"] in FINAL)


def retrying(task: dict[str, Any]) -> bool:
    """The first attempt failed and was settled: pending again, due later."""
    return bool(task["status"] == "pending" and task["retry_count"] >= 1)


def retried(task: dict[str, Any]) -> bool:
    """Finished again after a second attempt."""
    return finished(task) and bool(task["retry_count"] >= 2)


async def settled(
    node: LiveNode, task_id: int, key: str, done: Check = finished, timeout_s: float = 30
) -> dict[str, Any]:
    """The task (as `key` sees it over the API) once done(task) holds."""
    deadline = time.monotonic() + timeout_s
    task = await node.task(task_id, key=key)
    while not done(task):
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.02)
        task = await node.task(task_id, key=key)
    return task


def of_type(kind: str) -> Callable[[Message], bool]:
    return lambda message: bool(message["type"] == kind)


async def first_of(sock: Socket, kind: str, timeout_s: float = 15) -> Message:
    """The next message of that type (a dashboard's "page", a task page's "task")."""
    return (await read_until(sock, of_type(kind), timeout_s))[-1]


def task_ids(messages: list[Message]) -> set[int]:
    """Every task id the messages carry (changes, a dashboard's page, a task page's task)."""
    listed = {task["id"] for message in messages for task in message.get("tasks", [])}
    return listed | {message["task"]["id"] for message in messages if "task" in message}


async def wait_for_task(
    sock: Socket, task_id: int, status: str, timeout_s: float = 15
) -> dict[str, Any]:
    """The task as the socket shows it once it reaches status."""
    last = (await read_until(sock, shows(task_id, status), timeout_s))[-1]
    (task,) = [t for t in last["tasks"] if t["id"] == task_id and t["status"] == status]
    return dict(task)


async def close(sock: Socket) -> None:
    """Close and wait for the server's answer, so no socket outlives the test."""
    sock.close()
    while await asyncio.wait_for(sock.read_message(), 10) is not None:
        pass
