"""Calls per second of each named queue, as the console's hub sees them:
counted from the task changes of every node (the events), over a sliding
window, and only while someone watches (the hub feeds it then only).

A call is an attempt started, and the acquire raises a task's retry_count by
one for each. So a call is counted once per (task, retry_count), the first
time a change shows that attempt under way or settled (in progress,
completed, failed). Counting attempts rather than changes to in_progress
keeps a fast call counted when it comes from another node: the Redis bridge
sends only each task's latest state per tick, so its in_progress may arrive
already completed. A call whose attempt ends in a retry (pending again) on
another node within one tick is missed: a "pending" change cannot tell a
retry's settle from a "Retry now".
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from ..events import Summary

WINDOW_S = 10.0  # calls per second are averaged over this
MAX_CALLS = 200_000  # calls kept in the window; beyond, the oldest go (an undercount)
MAX_TASKS = 100_000  # tasks whose last counted attempt is remembered
CALLED = ("in_progress", "completed", "failed")  # states an attempt leads to

QueueKey = tuple[int, str]  # (the application's namespace, 0 without auth; the queue)


class CallRate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None  # when counting began; None: not counting
        self._calls: deque[tuple[float, QueueKey]] = deque()
        self._counts: Counter[QueueKey] = Counter()
        self._attempts: OrderedDict[int, int] = OrderedDict()  # task id -> last counted

    def start(self) -> None:
        self.since = self.clock()

    def stop(self) -> None:
        """Nobody watches: what comes next would be counted from a gap."""
        self.since = None
        self._calls.clear()
        self._counts.clear()
        self._attempts.clear()

    def add(self, changes: list[Summary]) -> None:
        now = self.clock()
        for change in changes:
            if self._new_attempt(change):
                key = (change.get("app_id") or 0, str(change.get("queue")))
                self._calls.append((now, key))
                self._counts[key] += 1
        self._prune(now)

    def _new_attempt(self, change: Summary) -> bool:
        attempt = change.get("retry_count")
        if change.get("status") not in CALLED or not isinstance(attempt, int) or attempt < 1:
            return False
        task_id = change.get("id")
        if not isinstance(task_id, int) or self._attempts.get(task_id, 0) >= attempt:
            return False
        self._attempts[task_id] = attempt
        self._attempts.move_to_end(task_id)
        while len(self._attempts) > MAX_TASKS:
            self._attempts.popitem(last=False)
        return True

    def _prune(self, now: float) -> None:
        while self._calls and (self._calls[0][0] <= now - WINDOW_S or len(self._calls) > MAX_CALLS):
            _, key = self._calls.popleft()
            self._counts[key] -= 1
            if not self._counts[key]:
                del self._counts[key]

    def per_s(self, key: QueueKey) -> float | None:
        """Calls started per second lately (over the window, or since counting
        began when that is shorter); None while nothing is counted."""
        if self.since is None:
            return None
        now = self.clock()
        self._prune(now)
        span = max(min(WINDOW_S, now - self.since), 1.0)
        return round(self._counts.get(key, 0) / span, 1)
