"""The console's numbers: counts, due work, throughput per interval.

Computed at most once per REFRESH_S per scope (an application, or None for
all) and shared by every page and socket of that scope. Throughput buckets
that have closed are kept; each refresh re-reads only the last two, so a
refresh costs two intervals of finished tasks, not the whole window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store.console import ConsoleReads

REFRESH_S = 1.0
BUCKET_S = 10  # one bar of the chart
BUCKETS = 30  # the chart's window: five minutes
TICKS = 6  # time labels under the chart: its start, its end, evenly between
COUNT_CAP = 100_000  # unfinished counts stop here (shown as "100,000+")
FORGET_S = 60.0  # a scope nobody asked about this long is dropped
ENDED = ("completed", "failed", "cancelled")  # counted per bar, stacked in this order


@dataclass
class Scope:
    at: float = 0.0
    asked: float = 0.0
    snapshot: dict[str, Any] = field(default_factory=dict)
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)
    final_below: int = 0
    computing: asyncio.Future[dict[str, Any]] | None = None


class Stats:
    def __init__(self, reads: ConsoleReads, clock: Callable[[], float] = time.time) -> None:
        self.reads = reads
        self.clock = clock
        self._scopes: dict[int | None, Scope] = {}

    async def get(self, app_id: int | None) -> dict[str, Any]:
        """The snapshot of a scope, at most REFRESH_S old."""
        now = self.clock()
        self._forget(now)
        scope = self._scopes.setdefault(app_id, Scope())
        scope.asked = now
        if now - scope.at < REFRESH_S and scope.snapshot:
            return scope.snapshot
        if scope.computing is None:  # one query set per scope, however many ask
            scope.computing = asyncio.ensure_future(self._compute(app_id, scope, now))
        computing = scope.computing
        try:
            return await asyncio.shield(computing)
        finally:
            if scope.computing is computing and computing.done():
                scope.computing = None

    async def _compute(self, app_id: int | None, scope: Scope, now: float) -> dict[str, Any]:
        unfinished = await self.reads.unfinished(app_id, now, COUNT_CAP)
        current = int(now // BUCKET_S)
        first = current - BUCKETS + 1
        since = max(first, scope.final_below) if scope.buckets else first
        rows = await self.reads.finished(app_id, since * BUCKET_S, BUCKET_S)
        fresh: dict[int, dict[str, int]] = {}
        for bucket, status, count in rows:
            fresh.setdefault(bucket, {})[status] = count
        scope.buckets = {
            b: fresh.get(b, {}) if b >= since else scope.buckets.get(b, {})
            for b in range(first, current + 1)
        }
        # The bucket before the current one may still get late commits: re-read next time.
        scope.final_below = current - 1
        scope.snapshot = snapshot(unfinished, scope.buckets, now)
        scope.at = now
        return scope.snapshot

    def _forget(self, now: float) -> None:
        for app_id in [key for key, s in self._scopes.items() if now - s.asked > FORGET_S]:
            del self._scopes[app_id]


def snapshot(
    unfinished: dict[str, Any], buckets: dict[int, dict[str, int]], now: float
) -> dict[str, Any]:
    """What pages and sockets show (JSON): counts, due work, the chart's bars
    and the times (epoch s) labelling its axis."""
    bars = [
        {"start": b * BUCKET_S, **{status: c.get(status, 0) for status in ENDED}}
        for b, c in sorted(buckets.items())
    ]
    oldest = unfinished["oldest_due"]
    start, end = bars[0]["start"], bars[-1]["start"] + BUCKET_S
    return {
        "pending": unfinished["pending"],
        "in_progress": unfinished["in_progress"],
        **{status: sum(bar[status] for bar in bars) for status in ENDED},
        "due_now": unfinished["due_now"],
        "oldest_due_age_s": round(now - oldest, 1) if oldest is not None else None,
        "capped": unfinished["capped"],
        "window_s": BUCKET_S * BUCKETS,
        "bucket_s": BUCKET_S,
        "throughput": bars,
        "ticks": [start + (end - start) * i // (TICKS - 1) for i in range(TICKS)],
        "at": now,
    }
