"""What the peers share on the bench's side: the worker subprocess and its
environment. Nothing here imports a peer's library (`command` checks they
are installed before anything does)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from ..loadgen import Enqueue, Opener
from ..processes import Child, Tree, base_environ
from ..scenarios import Bench

HOOK_URL_ENV = "BENCH_HOOK_URL"  # where a worker's tasks POST their body
CONCURRENCY = 50  # asyncio workers' jobs at once: ntorque's default concurrency
STOP_S = 10.0  # SIGTERM, then SIGKILL after this


class PeerWorker(Child):
    """A peer's worker: `worker()` of the module given, in a process of its own
    (this venv's python), with the bench's environment, the hook's url and
    the settings given; ready once its output matches `ready`. Its CPU and
    memory are its own and its children's."""

    def __init__(self, bench: Bench, name: str, module: str, settings: dict[str, str],
                 ready: str) -> None:  # fmt: skip
        env = {**base_environ(), HOOK_URL_ENV: bench.hook_url, **settings}
        # Imported by its name, not run as __main__: the peers' libraries look
        # tasks up by module (procrastinate warns of an app in __main__).
        args = [sys.executable, "-c", f"import {module}; {module}.worker()"]
        super().__init__(args, env, bench.workdir / name, "worker")
        self.wait_for_output(ready)
        self.tree = Tree(self.pid)

    def cpu_s(self) -> float:
        return self.tree.cpu_s()

    def rss_mb(self) -> float:
        return self.tree.rss_mb()

    def stop(self, timeout_s: float = STOP_S) -> None:
        super().stop(timeout_s)


def shared(enqueue: Enqueue) -> Opener:
    """Every producer on one client object: an asyncio library's own pool."""

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Enqueue]:
        yield enqueue

    return opener
