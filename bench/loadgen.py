"""The load generator: N tasks over `clients` keep-alive connections, as fast as
they go (burst) or at a fixed rate (paced).

Each body is {"t": <wall time just before sending>, "n": <sequence number>};
the receiver takes latency from it. A task counts as enqueued when its POST
got 201 (or 200, when the receiver itself is the target: the ceiling).

`drive` is the loop alone, over any way of enqueueing (`Opener`): the peers
of `python -m bench --peers` enqueue through their own client libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from urllib.parse import quote

from .httpraw import Connection, request_bytes, status_of


@dataclass(frozen=True)
class Target:
    """Where the load goes: ntorque's enqueue url naming the hook, or the hook itself."""

    port: int
    path: str
    headers: dict[str, str]

    @classmethod
    def ntorque(cls, port: int, key: str, hook_url: str) -> Target:
        headers = {"NTORQUE_API_KEY": key, "Content-Type": "application/json"}
        return cls(port, "/?url=" + quote(hook_url, safe=""), headers)

    @classmethod
    def receiver(cls, port: int) -> Target:
        return cls(port, "/hook", {"Content-Type": "application/json"})


@dataclass
class Sent:
    accepted: list[int] = field(default_factory=list)  # n of every 201
    refused: dict[int, int] = field(default_factory=dict)  # status code -> count
    first_s: float = 0.0  # wall time of the first request
    last_s: float = 0.0  # wall time of the last answer
    round_trips_s: list[float] = field(default_factory=list)

    @property
    def enqueue_per_s(self) -> float:
        return len(self.accepted) / max(self.last_s - self.first_s, 1e-9)


Body = dict[str, float]  # {"t": wall time just before enqueueing, "n": sequence number}
Enqueue = Callable[[Body], Awaitable[int]]  # one task -> a status code (200 or 201: accepted)
Opener = Callable[[], AbstractAsyncContextManager[Enqueue]]  # one producer's connection


async def send(
    target: Target, count: int, *, clients: int = 50, rate: float = 0.0, first_n: int = 0
) -> Sent:
    """Send tasks first_n .. first_n + count - 1; at `rate` per second when rate > 0."""
    return await drive(http_producer(target), count, clients=clients, rate=rate, first_n=first_n)


async def drive(
    opener: Opener, count: int, *, clients: int = 50, rate: float = 0.0, first_n: int = 0
) -> Sent:
    """Enqueue tasks first_n .. first_n + count - 1 from `clients` producers at once,
    each on a connection of its own; at `rate` per second when rate > 0."""
    sent = Sent(first_s=time.time())
    numbers = iter(range(first_n, first_n + count))
    started = time.monotonic()

    async def client() -> None:
        async with opener() as enqueue:
            for n in numbers:
                if rate:
                    await asyncio.sleep(started + (n - first_n) / rate - time.monotonic())
                await _one(enqueue, n, sent)

    await asyncio.gather(*(client() for _ in range(min(clients, count))))
    sent.last_s = time.time()
    return sent


async def _one(enqueue: Enqueue, n: int, sent: Sent) -> None:
    now = time.time()
    code = await enqueue({"t": now, "n": n})
    sent.round_trips_s.append(time.time() - now)
    if code in (200, 201):
        sent.accepted.append(n)
    else:
        sent.refused[code] = sent.refused.get(code, 0) + 1


def http_producer(target: Target) -> Opener:
    """One keep-alive connection per producer, POSTing each body to the target."""

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Enqueue]:
        connection = await Connection.open(target.port)

        async def enqueue(body: Body) -> int:
            raw = request_bytes("POST", target.path, target.headers, json.dumps(body).encode())
            return status_of(await connection.send(raw))

        try:
            yield enqueue
        finally:
            connection.close()

    return opener
