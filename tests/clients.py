"""One test, both clients: AsyncClient awaited on the node's loop, and the
blocking Client in a thread, off the node's loop (`Awaited`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ntorque.client import AsyncClient, Client


class Awaited:
    """The blocking Client, each method awaited in a thread: one test drives both clients."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


Clients = AsyncClient | Awaited


def client_for(
    like: Clients | str, base_url: str, key: str | None, timeout_s: float = 10
) -> Clients:
    """A client of that kind ("async" or "sync"), or of the same kind as the client `like`."""
    if like == "async" or isinstance(like, AsyncClient):
        return AsyncClient(base_url, key, timeout_s)
    return Awaited(Client(base_url, key, timeout_s))


async def every_task(api: Clients, **filters: Any) -> list[dict[str, Any]]:
    if isinstance(api, AsyncClient):
        return [task async for task in api.iter_tasks(**filters)]
    return await asyncio.to_thread(lambda: list(api.client.iter_tasks(**filters)))
