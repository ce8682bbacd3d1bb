"""Task events across nodes (ntorque.events): the Redis bridge's stop."""

from __future__ import annotations

import asyncio

from ntorque.events import TICK_S, Events, RedisBridge
from tests import services


async def test_a_bridge_closes_even_when_a_cancel_is_lost(redis_url: str) -> None:
    """On Python 3.11, asyncio.wait_for (redis-py publishes with it) swallows a
    cancel that arrives just as the publish completes; close() must still end
    the send loop, or a node's stop hangs."""
    bridge = RedisBridge(Events(), redis_url, services.unique_name("ntorque_events"))
    lost: list[asyncio.CancelledError] = []

    async def a_publish_that_loses_one_cancel() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as cancel:
            if lost:
                raise
            lost.append(cancel)  # swallowed, as wait_for may do

    bridge.flush = a_publish_that_loses_one_cancel  # type: ignore[method-assign]
    bridge.start()
    bridge.added.set()  # a change to send (idle, the send loop waits for one)
    await asyncio.sleep(TICK_S * 2)  # the send loop is in its publish
    closing = asyncio.ensure_future(bridge.close())
    try:
        await asyncio.wait([closing], timeout=2)
        assert closing.done(), "close() still waits for a loop it cancelled once"
        closing.result()
        assert len(lost) == 1
        assert all(loop.done() for loop in bridge._loops)
    finally:  # (a hung close: end what it left)
        for task in (closing, *bridge._loops):
            task.cancel()
        await asyncio.gather(closing, *bridge._loops, return_exceptions=True)
        await bridge._client.aclose()


async def test_an_idle_bridge_sleeps_until_a_change_or_a_watcher(redis_url: str) -> None:
    """No wake-up every tick while nothing changes and nobody watches: the
    send loop flushes only after a change, the receive loop subscribes only
    once someone watches."""
    events = Events()
    bridge = RedisBridge(events, redis_url, services.unique_name("ntorque_events"))
    flushes: list[float] = []

    async def counted_flush() -> None:
        flushes.append(asyncio.get_running_loop().time())

    bridge.flush = counted_flush  # type: ignore[method-assign]
    bridge.start()
    try:
        await asyncio.sleep(TICK_S * 5)
        assert flushes == [] and not bridge._subscribed
        bridge.added.set()
        await asyncio.sleep(TICK_S * 3)
        assert len(flushes) == 1
        events.watch(lambda summaries: None)
        for _ in range(50):
            if bridge._subscribed:
                break
            await asyncio.sleep(0.02)
        assert bridge._subscribed
    finally:
        await bridge.close()
