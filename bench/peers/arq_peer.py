"""arq (Redis): a worker running 50 jobs at once, polling every 0.05 s; each
job POSTs its body to the receiver. Otherwise arq's defaults: results kept
in Redis for an hour, logged at INFO.

The worker is `worker()`, in a process the bench starts (`common.PeerWorker`).

Tasks live in Redis's memory: not durable on a Redis without persistence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from ..loadgen import Body, Opener
from ..scenarios import Bench
from . import hooks
from .common import CONCURRENCY, PeerWorker, shared

NAME, DURABLE, STORE = "arq", False, "Redis memory"
POLL_DELAY_S = 0.05
QUEUE_ENV, REDIS_ENV = "BENCH_ARQ_QUEUE", "BENCH_REDIS_URL"


async def call_hook(ctx: dict[str, Any], body: dict[str, Any]) -> None:
    await hooks.post(ctx["http"], body)


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = hooks.client()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()


def worker() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Worker(
        functions=[func(call_hook, name="post")],
        redis_settings=RedisSettings.from_dsn(os.environ[REDIS_ENV]),
        queue_name=os.environ[QUEUE_ENV],
        max_jobs=CONCURRENCY,
        poll_delay=POLL_DELAY_S,
        on_startup=startup,
        on_shutdown=shutdown,
    ).run()


@contextlib.asynccontextmanager
async def started(bench: Bench) -> AsyncIterator[tuple[PeerWorker, Opener]]:
    """The worker on a queue of its own; the bench's producers share one arq pool."""
    queue = f"ntorque-bench-arq-{uuid.uuid4().hex[:10]}"
    settings = {REDIS_ENV: bench.redis_url, QUEUE_ENV: queue}
    process = PeerWorker(bench, NAME, __name__, settings, "Starting worker for")
    pool = await create_pool(RedisSettings.from_dsn(bench.redis_url), default_queue_name=queue)

    async def enqueue(body: Body) -> int:
        # arq's own job id, prefixed so the run's results can be deleted afterwards.
        job = await pool.enqueue_job("post", body, _job_id=f"{queue}:{uuid.uuid4().hex}")
        return 201 if job is not None else 409

    try:
        yield process, shared(enqueue)
    finally:
        process.stop()
        keys = [key async for key in pool.scan_iter(f"*{queue}*")]
        if keys:
            await pool.delete(*keys)
        await pool.aclose()
