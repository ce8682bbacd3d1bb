"""The console's hub: task changes, counts, queue rows and schedule rows,
pushed to every open socket.

One Hub per process watches the events only while a socket is open; each
tick it gives every socket the latest state of the tasks that changed (only
its viewer's own, unless it sees all; a task page's socket, only its task),
and the counts once per second; each dashboard also gets its namespace's
queue rows once per second, and at the next tick after a pause or resume
here (other nodes' show within the second). A schedules page gets its page
of schedules the same way (nothing else: no task changes, no counts). The
same events feed the calls per second. A socket whose write fails, or that
closes, leaves the hub at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ..events import Events, Summary
from .board import QueueBoard
from .calls import CallRate
from .schedule_board import ScheduleBoard
from .stats import REFRESH_S, Stats

log = logging.getLogger(__name__)

TICK_S = 0.25
MAX_PENDING = 2000  # changes kept per tick; the oldest go first (a page shows 50)

# What a page shows, as its socket says.
DASHBOARD, TASK, SCHEDULES = "dashboard", "task", "schedules"


class Peer(Protocol):
    page: str  # DASHBOARD, TASK or SCHEDULES
    scope: int | None  # the application whose tasks it may see; None: all
    task_id: int | None  # a task page's task: it hears of that one only
    namespace: int  # whose named queues or schedules it shows (0: auth is off)
    schedules_before: int | None  # a schedules page's cursor (None: the newest)

    def show(self, changes: list[Summary]) -> None: ...

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class Hub:
    def __init__(
        self, events: Events, stats: Stats, board: QueueBoard, schedules: ScheduleBoard
    ) -> None:
        self.events = events
        self.stats = stats
        self.board = board
        self.schedules = schedules
        self.calls: CallRate = board.calls
        self.peers: set[Peer] = set()
        self._pending: dict[int, Summary] = {}
        self._stale: set[int] = set()  # namespaces whose queues or schedules changed here
        self._loop: asyncio.Task[None] | None = None

    def join(self, peer: Peer) -> None:
        if not self.peers:
            self.events.watch(self._changed)
            self.calls.start()
            self._loop = asyncio.ensure_future(self._run())
        self.peers.add(peer)

    def leave(self, peer: Peer) -> None:
        self.peers.discard(peer)
        if not self.peers and self._loop is not None:
            self.events.unwatch(self._changed)
            self.calls.stop()
            self._loop.cancel()
            self._loop = None
            self._pending.clear()
            self._stale.clear()

    def close(self) -> None:
        """Stopping: say goodbye to every page (they reconnect to the next server)."""
        for peer in list(self.peers):
            self.leave(peer)
            peer.close(1001, "server stopping")

    def queues_changed(self, namespace: int) -> None:
        """A pause or resume here: its dashboards get fresh rows at the next tick."""
        self.board.stale(namespace)
        self._stale.add(namespace)

    def schedules_changed(self, namespace: int) -> None:
        """A pause or resume here: its schedules pages get fresh rows at the next tick."""
        self.schedules.stale(namespace)
        self._stale.add(namespace)

    def _changed(self, summaries: list[Summary]) -> None:
        self.calls.add(summaries)  # every change, before they are merged per task
        for item in summaries:
            self._pending.pop(item["id"], None)  # re-inserted last: newest at the end
            self._pending[item["id"]] = item
        while len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]

    async def _run(self) -> None:
        last_stats = 0.0
        while True:
            self.flush()
            if time.monotonic() - last_stats >= REFRESH_S:
                last_stats = time.monotonic()
                self._stale.clear()  # every namespace is read below
                try:
                    await self.send_stats()
                except Exception:
                    log.exception("console counts failed")
                await self._send_boards(None)
            elif self._stale:
                stale, self._stale = self._stale, set()
                await self._send_boards(stale)
            await asyncio.sleep(TICK_S)

    def flush(self) -> None:
        """Give each peer the changes it may see and watches."""
        changes, self._pending = list(self._pending.values()), {}
        if not changes:
            return
        for peer in list(self.peers):
            visible = [change for change in changes if _concerns(peer, change)]
            if visible:
                peer.show(visible)

    async def send_stats(self) -> None:
        counted = [peer for peer in self.peers if peer.page != SCHEDULES]
        for scope in {peer.scope for peer in counted}:
            snapshot = await self.stats.get(scope)
            for peer in [peer for peer in counted if peer.scope == scope]:
                peer.send({"type": "stats", "stats": snapshot})

    async def _send_boards(self, only: set[int] | None) -> None:
        """Queue rows to dashboards, schedule rows to schedules pages: of every
        namespace shown, or of those only."""
        for page, send in ((DASHBOARD, self.send_queues), (SCHEDULES, self.send_schedules)):
            shown = {peer.namespace for peer in self.peers if peer.page == page}
            for namespace in shown if only is None else shown & only:
                try:
                    await send(namespace)
                except Exception:
                    log.exception("console %s rows failed app=%s", page, namespace)

    async def send_queues(self, namespace: int) -> None:
        """The namespace's queue rows to its dashboards (task pages show none)."""
        rows = await self.board.rows(namespace)
        for peer in list(self.peers):
            if peer.page == DASHBOARD and peer.namespace == namespace:
                peer.send({"type": "queues", "queues": rows})

    async def send_schedules(self, namespace: int) -> None:
        """The namespace's schedules pages, each its own page of rows."""
        watching = [p for p in self.peers if p.page == SCHEDULES and p.namespace == namespace]
        for before in {peer.schedules_before for peer in watching}:
            rows = await self.schedules.page(namespace, before)
            for peer in watching:
                if peer.schedules_before == before:
                    peer.send({"type": "schedules", **rows})


def _concerns(peer: Peer, change: Summary) -> bool:
    if peer.page == SCHEDULES:
        return False  # its rows come read afresh, once per second
    if peer.scope is not None and change.get("app_id") != peer.scope:
        return False
    return peer.task_id is None or change.get("id") == peer.task_id
