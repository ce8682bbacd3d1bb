"""The original's "hybrid" client, a transactional outbox: tasks are written
inside your own transaction on ntorque's database, so they exist exactly when
your other changes commit, and are notified after the commit. A lost
notification only delays them: the requeuer finds every due task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import intake
from .client_errors import ClientError, Unauthorized
from .client_requests import passthrough
from .config import Settings
from .store import outbox
from .targets import Policy

log = logging.getLogger(__name__)


class Pusher(Protocol):
    """What the outbox needs of a client: `ntorque.client.Client` or `AsyncClient`."""

    api_key: str | None

    def push(self, task_id: int) -> Any: ...


class Outbox:
    """Adds tasks with the caller's connection, inside the caller's transaction."""

    def __init__(
        self,
        client: Pusher,
        connection: AsyncConnection,
        *,
        default_timeout_s: int = Settings.default_timeout_s,
        max_timeout_s: float = Settings.max_due_delay_s,
    ) -> None:
        self.client = client
        self.connection = connection
        self.default_timeout_s = default_timeout_s
        self.max_timeout_s = max_timeout_s
        self.ids: list[int] = []
        self._app_ids: list[int | None] = []  # looked up once per transaction

    async def add(
        self,
        url: str,
        body: bytes = b"",
        *,
        content_type: str = "",
        method: str = "POST",
        timeout: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Write a pending task (validated like the API does); its id."""
        sent = passthrough(headers)
        sent["Content-Type"] = content_type
        spec = intake.new_task(
            app_id=await self._app_id(),
            query={"url": url, "method": method, "timeout": str(timeout or "")},
            headers=sent,
            body=body,
            max_timeout_s=self.max_timeout_s,
            policy=Policy(),
        )
        task_id = await outbox.insert_task(
            self.connection, spec, time.time(), self.default_timeout_s
        )
        self.ids.append(task_id)
        return task_id

    async def _app_id(self) -> int | None:
        if not self._app_ids:
            self._app_ids.append(await self._find_app_id())
        return self._app_ids[0]

    async def _find_app_id(self) -> int | None:
        if not self.client.api_key:
            return None
        app_id = await outbox.active_app_id(self.connection, self.client.api_key)
        if app_id is None:
            raise Unauthorized(401, "the API key belongs to no active application")
        return app_id


@contextlib.asynccontextmanager
async def transaction(client: Pusher, engine: AsyncEngine) -> AsyncIterator[Outbox]:
    """`async with transaction(client, engine) as outbox:` — use outbox.connection
    for your own statements and outbox.add() for tasks; after the commit the
    tasks are pushed. Nothing is pushed when the block raises (rolled back)."""
    async with engine.begin() as connection:
        added = Outbox(client, connection)
        yield added
    for task_id in added.ids:
        try:
            await _push(client, task_id)
        except (OSError, ClientError) as error:
            log.warning("task %s not pushed (the requeuer will find it): %s", task_id, error)


async def _push(client: Pusher, task_id: int) -> None:
    if inspect.iscoroutinefunction(client.push):
        await client.push(task_id)
    else:  # the blocking client: off the event loop
        await asyncio.to_thread(client.push, task_id)
