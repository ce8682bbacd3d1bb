"""An unreachable database is StorageUnavailable (a 503), never a hang."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ntorque.config import Settings
from ntorque.errors import StorageUnavailable
from ntorque.store import Store
from ntorque.store import engine as database
from tests.factories import LEASE_EXTRA_S, MAX_RETRIES, NOW, spec

# -- an unreachable database ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_unreachable_database_raises_storage_unavailable(kind: str, tmp_path: Path) -> None:
    if kind == "postgres":
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    else:
        url = f"sqlite:///{tmp_path / 'no-such-directory' / 'ntorque.db'}"
    threads = set(threading.enumerate())
    engine = database.make_engine(Settings(database_url=url, db_timeout_s=1))
    store = Store(engine)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.tasks.insert(spec(), NOW),
        lambda: store.tasks.get(1),
        lambda: store.tasks.acquire([1], NOW, LEASE_EXTRA_S, MAX_RETRIES),
        lambda: store.tasks.due_ids(NOW, 10, MAX_RETRIES),
        lambda: store.apps.count(),
    ]
    try:
        for call in calls:
            with pytest.raises(StorageUnavailable) as caught:
                await call()
            assert caught.value.status == 503
    finally:
        await engine.dispose()
        await threads_ended(threads)


async def threads_ended(before: set[threading.Thread], timeout_s: float = 10.0) -> None:
    """Let aiosqlite's worker threads of failed connections hand back their
    last result while this test's event loop still runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(t.is_alive() for t in set(threading.enumerate()) - before):
            return
        await asyncio.sleep(0.01)
