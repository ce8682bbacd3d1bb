"""A first end-to-end figure: enqueue N tasks over HTTP, time until the hook saw them all.

    python bench/quick.py [--tasks 2000] [--clients 50] [--database-url URL] [--redis-url URL]

Starts a hook receiver (its own process), ntorque (`python -m ntorque`), a
fresh database when given a PostgreSQL url, and prints the rates. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.web import Application, RequestHandler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def receiver(port: int, counter: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    class Hook(RequestHandler):
        def post(self) -> None:
            with counter.get_lock():
                counter.value += 1
            self.write("ok")

    async def main() -> None:
        Application([(r"/hook", Hook)]).listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


async def enqueue_all(base: str, key: str, hook: str, tasks: int, clients: int) -> float:
    client = AsyncHTTPClient(max_clients=clients)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(tasks):
        queue.put_nowait(number)

    async def worker() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            request = HTTPRequest(
                f"{base}/?url={hook}", method="POST", body=f"n={number}",
                headers={"NTORQUE_API_KEY": key},
            )  # fmt: skip
            response = await client.fetch(request)
            assert response.code == 201

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ntorque-bench-"))
    counter = multiprocessing.Value("i", 0)
    hook_port, port = free_port(), free_port()
    hook = multiprocessing.Process(target=receiver, args=(hook_port, counter), daemon=True)
    hook.start()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    if args.redis_url:
        env.update(REDIS_URL=args.redis_url, NTORQUE_REDIS_CHANNEL=f"bench-{os.getpid()}")
    migrate = ["--migrate"] if args.database_url else []
    out = open(workdir / "out", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "ntorque", "serve", "--port", str(port), *migrate],
        env=env, cwd=workdir, stdout=out, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        key = ""
        while not key:
            time.sleep(0.1)
            match = re.search(r"its API key: (\S+)", (workdir / "out").read_text())
            key = match.group(1) if match else ""
        time.sleep(0.5)
        started = time.monotonic()
        enqueue_s = asyncio.run(
            enqueue_all(f"http://127.0.0.1:{port}", key, f"http://127.0.0.1:{hook_port}/hook",
                        args.tasks, args.clients)
        )  # fmt: skip
        while counter.value < args.tasks:
            time.sleep(0.005)
        drain_s = time.monotonic() - started
        print(f"tasks={args.tasks} clients={args.clients} db={env['DATABASE_URL'].split(':')[0]} "
              f"redis={'yes' if args.redis_url else 'no'}")  # fmt: skip
        enqueue_rate, drain_rate = args.tasks / enqueue_s, args.tasks / drain_s
        print(f"enqueue: {enqueue_rate:.0f} tasks/s; end to end: {drain_rate:.0f} tasks/s")
    finally:
        server.terminate()
        server.wait()
        hook.terminate()


if __name__ == "__main__":
    main()
