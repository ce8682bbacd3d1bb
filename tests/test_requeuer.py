"""The requeuer: a round re-notifies due tasks and cleans up, batch after batch."""

from __future__ import annotations

from ntorque.requeuer import Requeuer
from ntorque.store import Leadership, Store
from tests.factories import DONE, NOW, Clock, QueueUnderTest, spec


async def test_a_requeue_round_cleans_up_batch_after_batch_until_caught_up(store: Store) -> None:
    clock = Clock()
    q = QueueUnderTest(store, clock)
    for _ in range(25):
        await q.attempt(await q.queue.enqueue(spec()), DONE)
    clock.now = NOW + 10 * 86400
    requeuer = Requeuer(
        q.queue,
        Leadership(store.engine),
        batch=100,
        cleanup_after_s=86400,
        cleanup_interval_s=3600,
        cleanup_batch=10,
    )
    assert await requeuer.run_once() == (0, 25)  # batches of 10, 10 and 5
    await q.attempt(await q.queue.enqueue(spec()), DONE)
    clock.now += 2 * 86400
    assert await requeuer.run_once() == (0, 0)  # caught up: the next round is an interval away
