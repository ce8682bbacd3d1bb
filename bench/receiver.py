"""The bench's web-hook receiver: a raw asyncio HTTP/1.1 server in its own process.

    python -m bench.receiver --port 8899

Every request to a path not starting with /_ is a hook call. Its body is the
load generator's JSON {"t": <enqueue wall time>, "n": <sequence number>}; the
receiver records (n, task id, retry count header, t, arrival time, answer)
and answers 200, or 500 when told to fail: with fail_every=5 and
fail_attempts=2, every task whose n is a multiple of 5 gets 500 on its first
two calls (counted here, not read from ntorque's headers), then 200.

Control (JSON): POST /_reset {"fail_every": 0, "fail_attempts": 0} forgets
everything; GET /_stats -> {"calls", "ok", "duplicates", "last_ok"};
GET /_records -> {"records": [[n, task_id, retry, t, arrived, code], ...]};
GET /_ticks -> {"ticks": [[n, tick, arrived, code], ...]}: the calls made by a
schedule's tick, with their NTorque-Schedule-Tick header as sent (ISO 8601).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .httpraw import BadMessage, Message, parse

Record = tuple[int, int, int, float, float, int]  # n, task id, retry, sent, arrived, code
Span = tuple[int, float, float]  # n, arrived, answered: a slow call
Tick = tuple[int, str, float, int]  # n, NTorque-Schedule-Tick, arrived, code


class Book:
    """What the hook has seen so far."""

    def __init__(self, fail_every: int = 0, fail_attempts: int = 0) -> None:
        self.fail_every = fail_every
        self.fail_attempts = fail_attempts
        self.records: list[Record] = []
        self.calls_of: dict[int, int] = {}
        self.ok: set[int] = set()
        self.duplicates = 0
        self.last_ok = 0.0
        self.in_flight = 0  # slow calls arrived and not yet answered
        self.max_in_flight = 0
        self.spans: list[Span] = []
        self.ticks: list[Tick] = []

    def call(self, message: Message, arrived: float) -> int:
        """Record one hook call; the status code to answer."""
        try:
            data = json.loads(message.body)
            n, sent = int(data["n"]), float(data["t"])
        except (ValueError, KeyError, TypeError):
            return 400  # not the bench's body: ntorque changed it, fail loudly
        seen = self.calls_of.get(n, 0)
        self.calls_of[n] = seen + 1
        failing = self.fail_every and n % self.fail_every == 0 and seen < self.fail_attempts
        code = 500 if failing else 200
        task_id = int(message.headers.get("ntorque-task-id", "0"))
        retry = int(message.headers.get("ntorque-task-retry-count", "0"))
        self.records.append((n, task_id, retry, sent, arrived, code))
        tick = message.headers.get("ntorque-schedule-tick")
        if tick is not None:
            self.ticks.append((n, tick, arrived, code))
        if code == 200:
            self.duplicates += n in self.ok
            self.ok.add(n)
            self.last_ok = arrived
        return code

    def enter(self) -> None:
        """A slow call arrived."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, n: int, arrived: float) -> None:
        """A slow call is answered (or its connection is gone)."""
        self.in_flight -= 1
        self.spans.append((n, arrived, time.time()))

    def stats(self) -> dict[str, Any]:
        return {
            "calls": len(self.records),
            "ok": len(self.ok),
            "duplicates": self.duplicates,
            "last_ok": self.last_ok,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


def held_s(path: str) -> float:
    """How long a hook call to this path waits before its answer (?sleep_ms=)."""
    values = parse_qs(urlsplit(path).query).get("sleep_ms")
    return float(values[0]) / 1000 if values else 0.0


def number_of(message: Message) -> int:
    """The task's n, or -1 when the body is not the bench's."""
    try:
        return int(json.loads(message.body)["n"])
    except (ValueError, KeyError, TypeError):
        return -1


RESPONSES = {
    code: f"HTTP/1.1 {code} {reason}\r\nContent-Length: 2\r\n\r\nok".encode()
    for code, reason in ((200, "OK"), (400, "Bad Request"), (500, "Internal Server Error"))
}


def json_response(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":")).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return (head + "\r\n\r\n").encode() + body


class Server:
    def __init__(self) -> None:
        self.book = Book()

    def answer(self, message: Message) -> bytes:
        path = message.start.split(" ", 2)[1]
        if not path.startswith("/_"):
            return RESPONSES[self.book.call(message, time.time())]
        if path == "/_stats":
            return json_response(self.book.stats())
        if path == "/_records":
            return json_response({"records": self.book.records})
        if path == "/_ticks":
            return json_response({"ticks": self.book.ticks})
        if path == "/_spans":
            return json_response({"spans": self.book.spans})
        if path == "/_reset":
            options = json.loads(message.body or b"{}")
            self.book = Book(int(options["fail_every"]), int(options["fail_attempts"]))
            return json_response({"reset": True})
        return RESPONSES[400]

    def answer_later(self, message: Message, hold_s: float) -> asyncio.Future[bytes]:
        """A slow hook call: recorded now, counted in flight until answered."""
        book, arrived = self.book, time.time()  # a reset meanwhile starts a new book
        answer = RESPONSES[book.call(message, arrived)]
        book.enter()

        async def held() -> bytes:
            try:
                await asyncio.sleep(hold_s)
            finally:
                book.leave(number_of(message), arrived)
            return answer

        return asyncio.ensure_future(held())


class HookProtocol(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.continued = False
        self.behind: asyncio.Task[None] | None = None  # the answers still to write, in order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            while (message := parse(self.buffer)) is not None:
                self.continued = False
                self._respond(message)
        except (BadMessage, ValueError):
            self.transport.write(RESPONSES[400])
            self.transport.close()
            return
        self._maybe_continue()

    def _respond(self, message: Message) -> None:
        """Answer now, or after a slow call's sleep; answers keep the requests' order."""
        assert self.transport is not None
        path = message.start.split(" ", 2)[1]
        hold = 0.0 if path.startswith("/_") else held_s(path)
        answer: asyncio.Future[bytes]
        if hold:
            answer = self.server.answer_later(message, hold)
        elif self.behind is None:
            self.transport.write(self.server.answer(message))
            return
        else:  # a request behind a slow one: recorded now, answered after it
            answer = asyncio.get_running_loop().create_future()
            answer.set_result(self.server.answer(message))
        self.behind = asyncio.ensure_future(self._write_after(self.behind, answer))

    async def _write_after(
        self, before: asyncio.Task[None] | None, answer: Awaitable[bytes]
    ) -> None:
        if before is not None:
            await before
        data = await answer
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if self.behind is asyncio.current_task():
            self.behind = None

    def _maybe_continue(self) -> None:
        """curl waits for "100 Continue" before a large body (Expect: 100-continue)."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end >= 0 and not self.continued and b"100-continue" in self.buffer[:head_end]:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.continued = True


async def serve(port: int) -> None:
    server = Server()
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: HookProtocol(server), "127.0.0.1", port)
    async with listening:
        await listening.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
