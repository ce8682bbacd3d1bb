"""Just enough HTTP/1.1 for the bench: parse one message off a buffer, and a
keep-alive client connection. Far cheaper per request than tornado, so the
load generator and the hook receiver are not what the bench measures.

Bodies come with Content-Length or chunked; nothing else (no pipelining
beyond what arrives in order, no trailers, no compression).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class BadMessage(Exception):
    """The bytes are not an HTTP/1.1 message this parser reads."""


@dataclass(frozen=True)
class Message:
    start: str  # "POST /path HTTP/1.1" or "HTTP/1.1 201 Created"
    headers: dict[str, str]  # names lowercased
    body: bytes


def parse(buffer: bytearray) -> Message | None:
    """The first complete message in buffer, removed from it; None if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadMessage(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        found = _chunked(buffer, end + 4)
        if found is None:
            return None
        body, consumed = found
    else:
        size = int(headers.get("content-length", "0"))
        if len(buffer) < end + 4 + size:
            return None
        body, consumed = bytes(buffer[end + 4 : end + 4 + size]), end + 4 + size
    del buffer[:consumed]
    return Message(lines[0], headers, body)


def _chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """The decoded body and where it ends, or None while chunks are missing."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(buffer[position:line_end].split(b";")[0], 16)
        if len(buffer) < line_end + 2 + size + 2:
            return None
        body += buffer[line_end + 2 : line_end + 2 + size]
        position = line_end + 2 + size + 2
        if size == 0:
            return bytes(body), position


def status_of(message: Message) -> int:
    return int(message.start.split(" ", 2)[1])


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class Connection(asyncio.Protocol):
    """One keep-alive client connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting: asyncio.Future[Message] | None = None

    @classmethod
    async def open(cls, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, "127.0.0.1", port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiting is None or self.waiting.done():
            return
        try:
            message = parse(self.buffer)
        except (BadMessage, ValueError) as error:
            self.waiting.set_exception(error)
            return
        if message is not None:
            self.waiting.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(exc or ConnectionError("connection closed"))

    async def send(self, raw: bytes) -> Message:
        """Write one request, await its response."""
        assert self.transport is not None
        self.waiting = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiting

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def fetch(port: int, method: str, path: str, body: bytes = b"") -> Message:
    """One request on a connection of its own (control calls, not load)."""
    connection = await Connection.open(port)
    try:
        return await connection.send(request_bytes(method, path, {}, body))
    finally:
        connection.close()
