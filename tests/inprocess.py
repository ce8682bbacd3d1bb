"""ntorque in the test's own event loop: `app.Node` built around real parts
(SQLite + in-process channel, or PostgreSQL + Redis), listening on 127.0.0.1
and driven over HTTP by an async client on the same loop.

A node started with `loops=False` runs no consumer or requeuer of its own:
the test drives them with `consume()` and `requeue()`, and moves the node's
clock by hand (`clock.advance`), so backoff, requeue and leases are checked
exactly, without sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import tornado.httpclient

from ntorque import app, config
from ntorque.applications import Applications
from ntorque.store import engine
from ntorque.tasks import Task
from tests.server import FINAL, Response, free_port

KEY_HEADER = "NTORQUE_API_KEY"


class Clock:
    """A wall clock that starts at the real time and moves only when told."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LogRecords(logging.Handler):
    """Every record logged while a node runs, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class LiveNode:
    """One ntorque node in this event loop, on its own port."""

    def __init__(
        self,
        database_url: str,
        redis_url: str = "",
        redis_channel: str = "",
        *,
        loops: bool = True,
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        self.settings = config.Settings(
            database_url=database_url,
            redis_url=redis_url,
            redis_channel=redis_channel or f"ntorque_{uuid.uuid4().hex[:12]}",
            host="127.0.0.1",
            port=free_port(),
            role="all" if loops else "web",
            **settings,
        )
        self.clock = clock
        self.node: app.Node | None = None
        self.key = ""
        self.client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        self.trusted_ca = ""  # https: the CA file request() checks the certificate with
        self.logged = LogRecords()  # what the process would have logged (WARNING and up)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.settings.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.settings.port}"

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def running(self) -> app.Node:
        assert self.node is not None, "the node is not started"
        return self.node

    async def start(self) -> LiveNode:
        if self._sqlite_file_missing():  # the backends' files come migrated
            await asyncio.to_thread(engine.upgrade, self.settings.database_url)
        logging.getLogger().addHandler(self.logged)
        self.node = app.Node(self.settings, self.clock or time.time)
        await self.node.start()
        if self.node.created is not None:
            self.key = self.node.created.key
        return self

    def _sqlite_file_missing(self) -> bool:
        url = self.settings.database_url
        return engine.is_sqlite(url) and not Path(url.partition(":///")[2]).exists()

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()
            self.node = None
        self.client.close()
        logging.getLogger().removeHandler(self.logged)

    async def __aenter__(self) -> LiveNode:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- driving the loops by hand (loops=False) --------------------------------

    async def consume(self) -> list[Task]:
        """One consumer round without waiting for notifications; then wait
        for the calls it started to be settled. The tasks it acquired."""
        consumer = self.running.consumer
        started = await consumer.run_once(pop_timeout_s=0)
        if consumer.in_flight:
            await asyncio.wait(set(consumer.in_flight))
        return started

    async def requeue(self) -> tuple[int, int]:
        """One requeuer round: (tasks re-notified, tasks deleted)."""
        return await self.running.requeuer.run_once()

    # -- applications ------------------------------------------------------------

    @property
    def apps(self) -> Applications:
        """What the command line's application commands use."""
        return Applications(self.running.store.apps)

    async def create_app(self, name: str = "", *, admin: bool = False) -> tuple[str, str]:
        """A new application (a unique name unless given) and its API key."""
        name = name or f"app-{uuid.uuid4().hex[:10]}"
        created = await self.apps.create(name, admin=admin)
        return name, created.key

    # -- HTTP ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        *,
        follow_redirects: bool = False,
        timeout_s: float = 30,
    ) -> Response:
        """One HTTP request; `key` None means this node's default key, "" none at all."""
        sent = dict(headers or {})
        key = self.key if key is None else key
        if key:
            sent.setdefault(KEY_HEADER, key)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        answer = await self.client.fetch(
            self.base_url + path,
            method=method,
            body=body,
            headers=sent,
            raise_error=False,
            follow_redirects=follow_redirects,
            allow_nonstandard_methods=True,
            request_timeout=timeout_s,
            validate_cert=bool(self.trusted_ca),  # not checked unless a CA is given
            ca_certs=self.trusted_ca or None,
        )
        if answer.code == 599:
            raise OSError(f"{method} {path}: {answer.error}")
        return Response(answer.code, dict(answer.headers.get_all()), answer.body or b"")

    async def enqueue(
        self,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        key: str | None = None,
        **query: Any,
    ) -> dict[str, Any]:
        """POST a task; assert the 201 and return its JSON."""
        path = "/?" + urlencode({"url": url, **{k: str(v) for k, v in query.items()}})
        response = await self.request("POST", path, body, headers, key)
        assert response.status == 201, (response.status, response.body)
        task: dict[str, Any] = response.json
        return task

    async def task(self, task_id: int, key: str | None = None) -> dict[str, Any]:
        response = await self.request("GET", f"/task/{task_id}", key=key)
        assert response.status == 200, (response.status, response.body)
        task: dict[str, Any] = json.loads(response.body)
        return task

    async def wait_for(
        self, task_id: int, statuses: tuple[str, ...] = FINAL, timeout_s: float = 30
    ) -> dict[str, Any]:
        """Poll the task (without sleeping the loop away) until its status is one of statuses."""
        deadline = time.monotonic() + timeout_s
        task = await self.task(task_id)
        while task["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {task} after {timeout_s}s")
            await asyncio.sleep(0.02)
            task = await self.task(task_id)
        return task


def with_settings(node: LiveNode, **changes: Any) -> config.Settings:
    """The node's settings with changes (for a second node on the same backend)."""
    return dataclasses.replace(node.settings, **changes)
