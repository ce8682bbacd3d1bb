"""Celery (Redis broker): a prefork pool of 2 processes, no result backend;
each task POSTs its body to the receiver over a keep-alive connection of
its worker process (http.client). Otherwise Celery's defaults (prefetch 4
per process, acknowledged on receipt, logged at INFO).

The worker is `worker()`, in a process the bench starts (`common.PeerWorker`).

Producers: `send_task` (what `apply_async` calls) is synchronous, so each
of the bench's 50 producers hands its call to a thread of its own (50
threads; a Celery connection pool of 50). Tasks live in Redis's memory:
not durable on a Redis without persistence.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery

from ..loadgen import Body, Opener
from ..scenarios import Bench
from .common import HOOK_URL_ENV, PeerWorker, shared

NAME, DURABLE, STORE = "celery", False, "Redis memory"
TASK = "bench.post"
POOL_PROCESSES = 2
QUEUE_ENV, BROKER_ENV = "BENCH_CELERY_QUEUE", "BENCH_BROKER_URL"
FLAGS = ("--without-heartbeat", "--without-gossip", "--without-mingle")


def make_app(broker_url: str, queue: str, connections: int = 10) -> Any:
    app = Celery("ntorque_bench", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_default_queue=queue,
        broker_pool_limit=connections,
        broker_connection_retry_on_startup=True,
    )
    return app


class KeepAlive:
    """One HTTP/1.1 connection, opened on first use and kept open."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> int:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        return response.status


CLIENTS: dict[int, KeepAlive] = {}  # by pid: each pool process opens its own connection


def call_hook(body: dict[str, Any]) -> None:
    pid = os.getpid()
    client = CLIENTS.get(pid) or CLIENTS.setdefault(pid, KeepAlive(os.environ[HOOK_URL_ENV]))
    status = client.post(json.dumps(body).encode())
    if not 200 <= status < 300:
        raise RuntimeError(f"the hook answered {status}")


def worker() -> None:
    queue = os.environ[QUEUE_ENV]
    app = make_app(os.environ[BROKER_ENV], queue)
    app.task(name=TASK)(call_hook)
    app.worker_main(["worker", "--pool", "prefork", "--concurrency", str(POOL_PROCESSES),
                     *FLAGS, "--queues", queue, "--hostname", f"{queue}@%h",
                     "--loglevel", "INFO"])  # fmt: skip


@contextlib.asynccontextmanager
async def started(bench: Bench) -> AsyncIterator[tuple[PeerWorker, Opener]]:
    """The worker on a queue (Redis list) of its own; producers in threads."""
    queue = f"ntorque-bench-celery-{uuid.uuid4().hex[:10]}"
    settings = {BROKER_ENV: bench.redis_url, QUEUE_ENV: queue}
    process = PeerWorker(bench, NAME, __name__, settings, r"ready\.")
    app = make_app(bench.redis_url, queue, connections=bench.clients)
    threads = ThreadPoolExecutor(bench.clients, thread_name_prefix="celery-producer")
    loop = asyncio.get_running_loop()

    def send(body: Body) -> int:
        app.send_task(TASK, args=[body], queue=queue)
        return 201

    async def enqueue(body: Body) -> int:
        return await loop.run_in_executor(threads, send, body)

    try:
        yield process, shared(enqueue)
    finally:
        process.stop()
        threads.shutdown()
        app.close()
        delete_keys(bench.redis_url, queue)


def delete_keys(redis_url: str, queue: str) -> None:
    """The run's list and its binding (Celery's shared bookkeeping keys stay)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
