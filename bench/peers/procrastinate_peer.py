"""procrastinate (PostgreSQL): a worker running 50 jobs at once on a fresh
database; each job POSTs its body to the receiver. Otherwise procrastinate's
defaults (LISTEN/NOTIFY, jobs kept when done, logged at INFO); its
connection pool holds 10 to 20 connections, as ntorque's does (pool_size
10, max_overflow 10), and so does the bench's producers' pool.

The worker is `worker()`, in a process the bench starts (`common.PeerWorker`).

Tasks are rows in PostgreSQL: durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from procrastinate import App, PsycopgConnector

from .. import postgres
from ..loadgen import Body, Opener
from ..scenarios import Bench
from . import hooks
from .common import CONCURRENCY, PeerWorker, shared

NAME, DURABLE, STORE = "procrastinate", True, "PostgreSQL"
TASK = "post"
DATABASE_ENV = "BENCH_DATABASE_URL"
POOL_MIN, POOL_MAX = 10, 20
SESSION: list[aiohttp.ClientSession] = []  # the worker's one client, made in its loop


def make_app(url: str) -> App:
    connector = PsycopgConnector(conninfo=postgres.plain(url), min_size=POOL_MIN, max_size=POOL_MAX)
    return App(connector=connector)


async def call_hook(body: dict[str, Any]) -> None:
    await hooks.post(SESSION[0], body)


async def run_worker() -> None:
    app = make_app(os.environ[DATABASE_ENV])
    app.task(name=TASK)(call_hook)
    SESSION.append(hooks.client())
    try:
        async with app.open_async():
            await app.run_worker_async(concurrency=CONCURRENCY)
    finally:
        await SESSION[0].close()


def worker() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(run_worker())


@contextlib.asynccontextmanager
async def started(bench: Bench) -> AsyncIterator[tuple[PeerWorker, Opener]]:
    """procrastinate's schema on a fresh database, the worker on it; the
    producers share one App (and its pool) in the bench's process."""
    url = await postgres.create(bench.admin_url)
    try:
        app = make_app(url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            process = PeerWorker(bench, NAME, __name__, {DATABASE_ENV: url}, "Starting worker")
            task = app.configure_task(name=TASK)

            async def enqueue(body: Body) -> int:
                await task.defer_async(body={**body})
                return 201

            try:
                yield process, shared(enqueue)
            finally:
                process.stop()
    finally:
        await postgres.drop(bench.admin_url, url)
