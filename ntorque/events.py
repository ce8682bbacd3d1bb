"""Publish/subscribe of task changes (for live views), across nodes by Redis.

Two kinds of subscriber: `subscribe` gets each local Task as it changes;
`watch` gets batches of summaries (Task.to_json() fields plus app_id) from
this node and, through a RedisBridge, from every other node. A subscriber
that raises is dropped, so a broken listener can never stall dispatch.
Summaries are only built while someone watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from .tasks import Task

log = logging.getLogger(__name__)

Summary = dict[str, Any]
Listener = Callable[[Task], None]
Watcher = Callable[[list[Summary]], None]

# The fields of Task.to_json() a live row shows; headers and body stay out.
ROW_FIELDS = (
    "id", "queue", "url", "method", "status", "retry_count", "timeout", "due", "created",
    "modified", "last_status_code", "last_error",
)  # fmt: skip


def summary(task: Task) -> Summary:
    """A task's live row: a projection of the one serialisation, to_json()."""
    data = task.to_json()
    row = {name: data[name] for name in ROW_FIELDS}
    row["app_id"] = task.app_id
    return row


class Events:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._watchers: list[Watcher] = []
        self._watching: asyncio.Event | None = None  # set while anyone watches
        # The Redis bridge's intake of local changes (cheap: keeps references).
        self.forward: Callable[[Sequence[Task]], None] | None = None

    @property
    def watched(self) -> bool:
        return bool(self._watchers)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)
        self.watching.set()

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
        if not self._watchers:
            self.watching.clear()

    @property
    def watching(self) -> asyncio.Event:
        """Set while someone watches: what an idle bridge waits for, rather
        than looking every so often."""
        if self._watching is None:
            self._watching = asyncio.Event()
            if self._watchers:
                self._watching.set()
        return self._watching

    def publish(self, task: Task) -> None:
        self.publish_many((task,))

    def publish_many(self, tasks: Sequence[Task]) -> None:
        """Changes made on this node: to local subscribers, watchers and the bridge."""
        for task in tasks:
            for listener in list(self._listeners):
                try:
                    listener(task)
                except Exception:
                    log.exception("task %s event listener failed and was removed", task.id)
                    self.unsubscribe(listener)
        if self.forward is not None:
            self.forward(tasks)
        if self._watchers and tasks:
            self.deliver([summary(task) for task in tasks])

    def deliver(self, summaries: list[Summary]) -> None:
        """Summaries (local or from another node) to the watchers."""
        for watcher in list(self._watchers):
            try:
                watcher(summaries)
            except Exception:
                log.exception("event watcher failed and was removed")
                self.unwatch(watcher)


TICK_S = 0.1  # changes are collected this long, then sent as one message
QUIET_S = 1.0  # after a message nobody else heard, stay silent this long
MAX_BUFFERED = 5000  # tasks kept per tick; beyond, changes of new ids are dropped


class RedisBridge:
    """Changes of this node go to a Redis pub/sub channel in one message per
    tick (the latest state of each task); messages of other nodes go to the
    local watchers. A node subscribes only while it has watchers, so a
    PUBLISH nobody else hears tells a node to stop encoding for a while.
    With Redis down, local events go on; nothing here ever raises to callers.
    """

    def __init__(self, events: Events, url: str, channel: str, node: str = "") -> None:
        self.events = events
        self.channel = channel
        self.node = node or uuid.uuid4().hex
        self._client = redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._buffer: dict[int, Task] = {}
        self._added: asyncio.Event | None = None  # set when the buffer has changes
        self._quiet_until = 0.0
        self._subscribed = False
        self._down = False
        self._loops: list[asyncio.Task[None]] = []
        events.forward = self.add

    def add(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            if len(self._buffer) < MAX_BUFFERED or task.id in self._buffer:
                self._buffer[task.id] = task
        if self._buffer:
            self.added.set()

    @property
    def added(self) -> asyncio.Event:
        if self._added is None:
            self._added = asyncio.Event()
        return self._added

    def start(self) -> None:
        self._loops = [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._receive_loop()),
        ]

    async def close(self) -> None:
        self.events.forward = None
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            # A cancel can be lost: on Python 3.11, asyncio.wait_for (redis-py
            # sends with it) swallows one arriving as the send completes.
            while not loop.done():
                await asyncio.wait([loop], timeout=TICK_S)
                loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self._client.aclose()

    async def _send_loop(self) -> None:
        # Idle, it sleeps until a change comes (no wake-up every tick); then
        # it collects for TICK_S and sends them as one message.
        while True:
            await self.added.wait()
            await asyncio.sleep(TICK_S)
            self.added.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send what this tick collected, unless no other node listens lately."""
        tasks, self._buffer = list(self._buffer.values()), {}
        if not tasks or time.monotonic() < self._quiet_until:
            return
        message = json.dumps({"node": self.node, "tasks": [summary(task) for task in tasks]})
        try:
            receivers = int(await self._client.publish(self.channel, message))
        except (RedisError, OSError) as error:
            self._went_down(error)
            return
        self._came_back()
        if receivers - int(self._subscribed) <= 0:
            self._quiet_until = time.monotonic() + QUIET_S

    async def _receive_loop(self) -> None:
        while True:
            if not self.events.watched:
                await self.events.watching.wait()
                continue
            try:
                await self._receive()
            except (RedisError, OSError) as error:
                self._went_down(error)
                await asyncio.sleep(1.0)

    async def _receive(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self._subscribed = True
            self._came_back()
            while self.events.watched:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self.received(message["data"])
        finally:
            self._subscribed = False
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8 on

    def received(self, data: bytes | str) -> None:
        """A message from the channel: another node's changes to the watchers."""
        try:
            message = json.loads(data)
            node, summaries = message["node"], message["tasks"]
        except (ValueError, TypeError, KeyError):
            log.warning("events dropped a message that is not ntorque's: %.40r", data)
            return
        if node != self.node and isinstance(summaries, list):
            self.events.deliver([item for item in summaries if isinstance(item, dict)])

    def _went_down(self, error: Exception) -> None:
        if not self._down:
            log.warning("events redis unavailable, live views show this node only: %s", error)
        self._down = True

    def _came_back(self) -> None:
        if self._down:
            log.info("events redis available again")
        self._down = False
