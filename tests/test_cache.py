"""The hot path's lookup cache: one load in flight per key, then kept ttl_s."""

from __future__ import annotations

import asyncio

import pytest

from ntorque.cache import TtlCache


class Source:
    def __init__(self) -> None:
        self.loads = 0
        self.fail = False

    async def load(self) -> str:
        self.loads += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("database unavailable")
        return f"value {self.loads}"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_share_one_load() -> None:
    source, cache = Source(), TtlCache[str, str](5.0)
    values = await asyncio.gather(*(cache.get("key", source.load) for _ in range(50)))
    assert values == ["value 1"] * 50
    assert source.loads == 1


async def test_a_value_is_kept_for_ttl_then_loaded_again() -> None:
    source, clock = Source(), Clock()
    cache = TtlCache[str, str](5.0, clock=clock)
    assert await cache.get("key", source.load) == "value 1"
    clock.now += 4.9
    assert await cache.get("key", source.load) == "value 1"
    clock.now += 0.2
    assert await cache.get("key", source.load) == "value 2"


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    source, cache = Source(), TtlCache[str, str](5.0)
    source.fail = True
    results = await asyncio.gather(
        *(cache.get("key", source.load) for _ in range(3)), return_exceptions=True
    )
    assert [str(result) for result in results] == ["database unavailable"] * 3
    source.fail = False
    assert await cache.get("key", source.load) == "value 2"


async def test_with_no_ttl_every_lookup_loads() -> None:
    source, cache = Source(), TtlCache[str, str](0.0)
    assert await cache.get("key", source.load) == "value 1"
    assert await cache.get("key", source.load) == "value 2"


async def test_a_waiter_that_gives_up_leaves_the_load_to_the_others() -> None:
    source, cache = Source(), TtlCache[str, str](5.0)
    impatient = asyncio.ensure_future(cache.get("key", source.load))
    patient = asyncio.ensure_future(cache.get("key", source.load))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == "value 1"
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert source.loads == 1
