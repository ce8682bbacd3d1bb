"""The notification channel contract (in-process and Redis), and Redis outages."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from ntorque.channel import Channel, RedisChannel
from tests.netfaults import RedisProcess
from tests.services import unique_name

QUICK_S = 0.05  # how long a pop waits when nothing is expected


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[tuple[RedisChannel, redis.Redis]]:
    """A Redis channel and a plain client on its list, to push payloads by hand."""
    name = unique_name("ntorque_test_channel")
    channel = RedisChannel(redis_url, name)
    client = redis.from_url(redis_url)
    try:
        yield channel, client
    finally:
        await client.delete(name)
        await client.aclose()
        await channel.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the contract, on both channels -------------------------------------------


async def test_ids_come_out_in_the_order_they_went_in(channel: Channel) -> None:
    await channel.push([3, 1, 2])
    await channel.push([10])
    await channel.push([])
    await channel.push([7, 7])
    assert await channel.pop(100, 1) == [3, 1, 2, 10, 7, 7]
    assert await channel.pop(100, QUICK_S) == []


async def test_pop_takes_at_most_limit_ids(channel: Channel) -> None:
    await channel.push([1, 2, 3, 4, 5])
    assert await channel.pop(2, 1) == [1, 2]
    assert await channel.pop(1, 1) == [3]
    assert await channel.pop(10, 1) == [4, 5]


async def test_pop_on_an_empty_channel_returns_nothing_after_its_timeout(
    channel: Channel,
) -> None:
    assert await channel.pop(10, 0.1) == []


async def test_pop_waits_for_the_first_id(channel: Channel) -> None:
    waiting = asyncio.ensure_future(channel.pop(10, 10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await channel.push([42])
    assert await asyncio.wait_for(waiting, 10) == [42]


async def test_depth_counts_waiting_ids(channel: Channel) -> None:
    assert await channel.depth() == 0
    await channel.push([1, 2, 3])
    assert await channel.depth() == 3
    await channel.pop(1, 1)
    assert await channel.depth() == 2
    await channel.pop(10, 1)
    assert await channel.depth() == 0


# -- Redis payloads ------------------------------------------------------------


async def test_redis_accepts_the_original_id_colon_retry_payload(
    raw_redis: tuple[RedisChannel, redis.Redis],
) -> None:
    channel, client = raw_redis
    await client.rpush(channel.name, "17:3", b"18:0", "19")
    assert await channel.depth() == 3
    assert await channel.pop(10, 1) == [17, 18, 19]


async def test_redis_drops_a_garbage_payload_with_a_warning(
    raw_redis: tuple[RedisChannel, redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    channel, client = raw_redis
    caplog.set_level(logging.WARNING, logger="ntorque.channel")
    await client.rpush(channel.name, "5", "not-a-task-id", "6")
    assert await channel.pop(10, 1) == [5, 6]
    await client.rpush(channel.name, "")
    assert await channel.pop(10, 1) == []

    dropped = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(dropped) == 2
    assert "not-a-task-id" in dropped[0].getMessage()
    assert await channel.depth() == 0


async def test_redis_channel_pushes_are_shared_between_processes(
    raw_redis: tuple[RedisChannel, redis.Redis], redis_url: str
) -> None:
    """Another node's channel object on the same list sees the same ids."""
    channel, _client = raw_redis
    other = RedisChannel(redis_url, channel.name)
    try:
        await other.push([8, 9])
        assert await channel.pop(10, 1) == [8, 9]
    finally:
        await other.close()


# -- one round trip per pop -------------------------------------------------------


POPS = {"blmpop", "blpop", "lpop"}


async def popped_by(
    redis_process: RedisProcess, ids: list[int]
) -> tuple[list[int], dict[str, int]]:
    """Push ids, pop them all at once: what came out, and the pop commands
    used (how many times each)."""
    redis_process.start()
    channel = RedisChannel(redis_process.url, unique_name("ntorque"))
    client = redis.from_url(redis_process.url)
    try:
        await channel.push(ids)
        await client.config_resetstat()
        popped = await channel.pop(10, 1)
        stats = await client.info("commandstats")
        used = {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}
        return popped, {name: calls for name, calls in used.items() if name in POPS}
    finally:
        await client.aclose()
        await channel.close()
        redis_process.stop()


async def test_a_pop_of_several_ids_is_one_command(tmp_path: Path) -> None:
    popped, used = await popped_by(RedisProcess(tmp_path), [1, 2, 3])
    assert popped == [1, 2, 3]
    assert used == {"blmpop": 1}  # no LPOP after it


async def test_a_redis_older_than_7_still_gives_every_id(tmp_path: Path) -> None:
    """Without BLMPOP (Redis 6), a pop is BLPOP then LPOP, as it was."""
    popped, used = await popped_by(RedisProcess(tmp_path, "--rename-command", "BLMPOP", ""), [4, 5])
    assert popped == [4, 5]
    assert used == {"blpop": 1, "lpop": 1}


# -- Redis down ----------------------------------------------------------------


@pytest.fixture
async def redis_down() -> AsyncIterator[RedisChannel]:
    channel = RedisChannel(f"redis://127.0.0.1:{closed_port()}/0", unique_name("ntorque"))
    try:
        yield channel
    finally:
        await channel.close()


async def test_redis_down_push_falls_back_to_this_process(
    redis_down: RedisChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ntorque.channel")
    await redis_down.push([1, 2])  # does not raise
    await redis_down.push([3])
    assert await redis_down.depth() == 3
    assert await redis_down.pop(2, 1) == [1, 2]
    assert await redis_down.pop(10, 1) == [3]
    assert await redis_down.depth() == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not on every push
    assert "redis unavailable" in warnings[0].getMessage()


async def test_redis_down_pop_does_not_raise_and_waits_locally(redis_down: RedisChannel) -> None:
    assert await redis_down.pop(10, 0.1) == []
    waiting = asyncio.ensure_future(redis_down.pop(10, 10))
    await asyncio.sleep(0.2)
    await redis_down.push([5])
    assert await asyncio.wait_for(waiting, 10) == [5]


async def test_pop_without_waiting_takes_what_is_there_at_once(channel: Channel) -> None:
    """A pop with no timeout never waits (on Redis, BLPOP would take 0 as "for ever")."""
    assert await asyncio.wait_for(channel.pop(10, 0), 2) == []
    await channel.push([7, 8])
    assert await asyncio.wait_for(channel.pop(10, 0), 2) == [7, 8]
