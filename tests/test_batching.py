"""The group-commit batcher: alone at once, together under load, errors to all."""

from __future__ import annotations

import asyncio

import pytest

from ntorque.batching import Batcher


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def flush(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the database went away")
        return [item * 10 for item in items]


async def test_a_lone_item_is_written_at_once_with_its_own_result() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_batch=10)
    assert await asyncio.wait_for(batcher.submit(1), 1) == 10
    assert recorder.batches == [[1]]


async def test_items_arriving_during_a_write_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.flush, max_batch=10)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)  # the first write is under way, held
    later = [asyncio.ensure_future(batcher.submit(n)) for n in range(2, 7)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[1]]
    recorder.release.set()
    assert await first == 10
    assert [await job for job in later] == [20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6]]


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_batch=3)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(8)))
    assert results == [n * 10 for n in range(8)]
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]


async def test_a_failed_write_fails_every_item_of_its_batch_and_the_next_write_goes_on() -> None:
    recorder = Recorder(fail=True)
    batcher = Batcher(recorder.flush, max_batch=10)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["the database went away"] * 3
    recorder.fail = False
    assert await batcher.submit(4) == 40


async def test_a_submitter_that_gives_up_does_not_stop_its_batch() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.flush, max_batch=10)
    waiting = asyncio.ensure_future(batcher.submit(1))
    other = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)
    waiting.cancel()
    recorder.release.set()
    assert await other == 20
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert recorder.batches == [[1, 2]]
