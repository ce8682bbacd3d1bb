"""The load generator: N tasks over `clients` keep-alive connections, as fast as
they go (burst) or at a fixed rate (paced).

Each body is {"t": <wall time just before sending>, "n": <sequence number>};
the receiver takes latency from it. A task counts as enqueued when its POST
got 201 (or 200, when the receiver itself is the target: the ceiling).
"""

from __future__ import annotations

import asyncio
import json
import time
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


async def send(
    target: Target, count: int, *, clients: int = 50, rate: float = 0.0, first_n: int = 0
) -> Sent:
    """Send tasks first_n .. first_n + count - 1; at `rate` per second when rate > 0."""
    sent = Sent(first_s=time.time())
    numbers = iter(range(first_n, first_n + count))
    started = time.monotonic()

    async def client() -> None:
        connection = await Connection.open(target.port)
        try:
            for n in numbers:
                if rate:
                    await asyncio.sleep(started + (n - first_n) / rate - time.monotonic())
                await _one(connection, target, n, sent)
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(min(clients, count))))
    sent.last_s = time.time()
    return sent


async def _one(connection: Connection, target: Target, n: int, sent: Sent) -> None:
    now = time.time()
    body = json.dumps({"t": now, "n": n}).encode()
    answer = await connection.send(request_bytes("POST", target.path, target.headers, body))
    sent.round_trips_s.append(time.time() - now)
    code = status_of(answer)
    if code in (200, 201):
        sent.accepted.append(n)
    else:
        sent.refused[code] = sent.refused.get(code, 0) + 1
