"""Several processes per node (`serve --processes 2`) on PostgreSQL and Redis:
one port served by every child, each child a consumer, one maintenance
leader, a killed child started again, /metrics summing every child (a killed
one's counters kept), SIGTERM stopping them all gracefully.
The processes are the point, so ntorque runs as a real process tree.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ntorque.store.leadership import Leadership
from tests.conftest import Backend, make_backend, server_for
from tests.hookserver import HookServer
from tests.netfaults import wait_until
from tests.server import KEY_LINE, NtorqueServer
from tests.services import run_async
from tests.test_metrics import Samples, parse, value

SHORT = {"NTORQUE_MIN_DUE_DELAY": "0.2", "NTORQUE_REQUEUE_INTERVAL": "0.2"}
LEADER_LINE = re.compile(r"\[(\d+)\] ntorque\.store\.leadership this node now runs")
METRICS_TOKEN = "multiprocess-metrics-token-0123"
CONCURRENCY = 3


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "postgres", tmp_path)


def children(pid: int) -> set[int]:
    """The live (not zombie) children of pid, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
        except OSError:  # gone meanwhile
            continue
        if int(ppid) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        columns = line.split()
        if columns[3] == "0A" and int(columns[1].rpartition(":")[2], 16) == port:
            return columns[9]
    raise AssertionError(f"nothing listens on port {port}")


def socket_inodes(pid: int) -> set[str]:
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {link[8:-1] for link in links if link.startswith("socket:[")}


def database(url: str, query: str, *args: Any) -> Any:
    async def fetch() -> Any:
        connection = await asyncpg.connect(url, timeout=5)
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    return run_async(fetch())


def leaders(url: str) -> int:
    """Sessions holding the maintenance lock on this database."""
    return int(
        database(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objid = $1 AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            Leadership.LOCK_KEY,
        )
    )


def deliver_once(server: NtorqueServer, hooks: HookServer, count: int) -> None:
    run = uuid.uuid4().hex[:12]
    paths = [f"/status/200/{run}-{n}" for n in range(count)]
    ids = [server.enqueue(hooks.url(path))["id"] for path in paths]
    for task_id in ids:
        assert server.wait_for(task_id, timeout_s=15)["status"] == "completed"
    assert [len(hooks.calls(path)) for path in paths] == [1] * count


def kids(parent: int, count: int = 2) -> set[int]:
    wait_until(lambda: len(children(parent)) == count, 15, f"{count} child processes")
    return children(parent)


def test_two_processes_share_the_port_and_stop_together(
    shared: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    server = server_for(shared, tmp_path, ("--processes", "2"), **SHORT)
    with server:
        assert server.process is not None
        parent = server.process.pid
        first = kids(parent)
        assert len(KEY_LINE.findall(server.stdout_path.read_text())) == 1  # the key, once
        listening = listening_inode(server.port)
        assert all(listening in socket_inodes(pid) for pid in first)
        for paused in first:  # the other child alone answers on the port
            os.kill(paused, signal.SIGSTOP)
            try:
                assert server.request("GET", "/", timeout_s=5).status == 200
            finally:
                os.kill(paused, signal.SIGCONT)
        wait_until(lambda: leaders(shared.database_url) == 1, 10, "one maintenance leader")
        deliver_once(server, hooks, 20)
        elected = LEADER_LINE.findall(server.log_path.read_text())
        assert len(elected) == 1 and int(elected[0]) in first, elected

        killed = int(elected[0])  # the leader: another process takes over maintenance
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: killed not in children(parent), 10, "the kill")
        second = kids(parent)
        assert killed not in second and len(second & first) == 1
        logs = server.log_path.read_text()
        assert f"pid={killed} was killed by SIGKILL: starting it again" in logs
        deliver_once(server, hooks, 10)
        wait_until(
            lambda: len(LEADER_LINE.findall(server.log_path.read_text())) == 2, 10, "a new leader"
        )
        assert int(LEADER_LINE.findall(server.log_path.read_text())[1]) in second
        assert leaders(shared.database_url) == 1

        slow = f"/slow/2/{uuid.uuid4().hex[:12]}"
        task = server.enqueue(hooks.url(slow), timeout=10)
        hooks.wait_for_calls(slow, 1)
        started = time.monotonic()
        assert server.stop(timeout_s=15) == 0, server.logs()
        assert time.monotonic() - started < 8
    logs = server.log_path.read_text()
    for pid in second:
        assert re.search(rf"process [12]/2 pid={pid} exited with status 0", logs), logs
        assert not Path(f"/proc/{pid}").exists()
    status = database(shared.database_url, "SELECT status FROM tasks WHERE id = $1", task["id"])
    assert status == "completed"  # the call in flight finished before the exit
    assert len(hooks.calls(slow)) == 1


def test_children_that_keep_dying_stop_the_node(shared: Backend, tmp_path: Path) -> None:
    """Each child fails at start (a certificate file that is not there): after
    max(processes, 5) restarts within 30 s the parent stops and exits 1."""
    missing = str(tmp_path / "missing.pem")
    server = server_for(
        shared,
        tmp_path,
        ("--processes", "2"),
        NTORQUE_CERTFILE=missing,
        NTORQUE_KEYFILE=missing,
    )
    server.start(wait=False)
    assert server.process is not None
    assert server.process.wait(30) == 1
    logs = server.log_path.read_text()
    assert "cannot load certfile/keyfile" in logs
    assert "too many exits, stopping every process" in logs
    assert logs.count(" started pid=") == 7  # 2, then 5 restarts; the 6th exit gives up


def test_children_stop_when_the_parent_is_killed(shared: Backend, tmp_path: Path) -> None:
    """kill -9 of the parent: each child is told (SIGTERM) and stops gracefully."""
    server = server_for(shared, tmp_path, ("--processes", "2"))
    with server:
        assert server.process is not None
        first = kids(server.process.pid)
        server.kill()
        wait_until(lambda: not any(running(pid) for pid in first), 10, "the children stopped")
    assert server.log_path.read_text().count("ntorque.app stopped") == 2


def scrape(server: NtorqueServer) -> Samples:
    response = server.request(
        "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, key=""
    )
    assert response.status == 200, (response.status, response.body)
    return parse(response.body)


def summed(samples: Samples, name: str, **labels: str) -> float:
    """A counter's value summed over its other labels (queue, code)."""
    wanted = set(labels.items())
    return sum(
        count for (found, keys), count in samples.items() if found == name and wanted <= keys
    )


def assert_figures(samples: Samples, tasks: int) -> None:
    assert summed(samples, "ntorque_tasks_enqueued_total") == tasks
    assert summed(samples, "ntorque_attempts_total", outcome="success") == tasks
    assert summed(samples, "ntorque_attempts_total") == tasks  # no retries, no failures
    assert value(samples, "ntorque_consumer_slots") == 2 * CONCURRENCY
    assert value(samples, "ntorque_consumer_slots_in_use") == 0


def test_metrics_sum_every_process_and_outlive_a_killed_one(
    shared: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    """Whichever child answers /metrics reports both children's counters; a
    killed child's counters stay counted, its slots leave, its successor's join."""
    temporary = tmp_path / "tmp"  # where the parent makes the metrics directory
    temporary.mkdir()
    settings = {"TMPDIR": str(temporary), "NTORQUE_METRICS_TOKEN": METRICS_TOKEN}
    settings["NTORQUE_CONCURRENCY"] = str(CONCURRENCY)
    server = server_for(shared, tmp_path / "node", ("--processes", "2"), **settings, **SHORT)
    with server:
        assert server.process is not None
        parent = server.process.pid
        first = kids(parent)
        (directory,) = temporary.glob("ntorque-metrics-*")
        deliver_once(server, hooks, 20)
        for _ in range(8):  # each scrape is a new connection: either child may take it
            assert_figures(scrape(server), 20)
        written = {path.name for path in directory.iterdir()}
        assert {f"counter_{pid}.db" for pid in first} <= written, written

        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: killed not in children(parent), 10, "the kill")
        (started,) = kids(parent) - first
        assert not (directory / f"gauge_livesum_{killed}.db").exists()  # gone at the reap
        wait_until(
            lambda: f"[{started}] ntorque.app consuming" in server.log_path.read_text(),
            10,
            "the new child consuming",
        )
        wait_until(  # its consumer's first step sets its slots, just after that line
            lambda: value(scrape(server), "ntorque_consumer_slots") == 2 * CONCURRENCY,
            5,
            "the new child's slots",
        )
        for _ in range(8):
            assert_figures(scrape(server), 20)
        assert server.stop(timeout_s=15) == 0, server.logs()
    assert not directory.exists()
