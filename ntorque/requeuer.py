"""The requeuer: every few seconds, re-notify due tasks; now and then, clean up.

A lost notification therefore costs only latency, and a task whose consumer
died is found again once its lease has run out. With several nodes, only the
leader (see store.Leadership) runs it.
"""

from __future__ import annotations

import logging
import time

from .errors import StorageUnavailable
from .queue import Queue
from .store.leadership import Leadership

log = logging.getLogger(__name__)

# Cleanup deletes batch after batch, each its own short transaction, for at
# most this long per round; dispatch goes on between batches.
CLEANUP_BUDGET_S = 1.0


class Requeuer:
    def __init__(
        self,
        queue: Queue,
        leadership: Leadership,
        *,
        batch: int,
        cleanup_after_s: float,
        cleanup_interval_s: float,
        cleanup_batch: int,
    ) -> None:
        self.queue = queue
        self.leadership = leadership
        self.batch = batch
        self.cleanup_after_s = cleanup_after_s
        self.cleanup_interval_s = cleanup_interval_s
        self.cleanup_batch = cleanup_batch
        self._next_cleanup = 0.0
        self._busy = False

    async def run_once(self) -> tuple[int, int]:
        """(tasks re-notified, tasks deleted) in this round."""
        notified = await self._requeue()
        deleted = await self._cleanup() if time.monotonic() >= self._next_cleanup else 0
        return notified, deleted

    async def _cleanup(self) -> int:
        """Delete old finished tasks in small batches until caught up or out of time."""
        deadline = time.monotonic() + CLEANUP_BUDGET_S
        deleted = 0
        while time.monotonic() < deadline:
            batch = await self.queue.cleanup(self.cleanup_after_s, self.cleanup_batch)
            deleted += batch
            if batch < self.cleanup_batch:  # caught up: wait for the next interval
                self._next_cleanup = time.monotonic() + self.cleanup_interval_s
                break
        return deleted

    async def _requeue(self) -> int:
        # Ids still waiting in the channel will be reached anyway: pushing due
        # tasks again while a backlog is waiting would only pile up duplicates.
        if await self.queue.channel.depth() >= self.batch:
            return 0
        return await self.queue.requeue(self.batch)

    async def tick(self) -> None:
        """One PeriodicCallback round; never overlaps a round still running."""
        if self._busy:
            return
        self._busy = True
        try:
            if await self.leadership.lead():
                await self.run_once()
        except StorageUnavailable:
            log.warning("requeue: database unavailable, trying again next round")
        except Exception:
            log.exception("requeue: unexpected error, trying again next round")
        finally:
            self._busy = False
