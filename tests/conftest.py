"""Fixtures: hermetic settings, the real services, backends, hook server."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque.channel import Channel, LocalChannel, RedisChannel
from ntorque.config import Settings
from ntorque.store import Store
from ntorque.store import engine as database
from tests import services
from tests.faults.harness import SUMMARIES
from tests.hookserver import HookServer, TLSFiles, make_tls_files
from tests.inprocess import LiveNode
from tests.server import NtorqueServer

# Hermetic: the developer's own settings never leak into a test.
for _name in list(os.environ):
    if _name.startswith(("NTORQUE_", "SQLALCHEMY_")) or _name in (
        "DATABASE_URL",
        "REDIS_URL",
        "MODE",
        "PORT",
        "HSTS_PROTOCOL_HEADER",
    ):
        del os.environ[_name]

BACKENDS = ("sqlite", "postgres")


@dataclass
class Backend:
    """Where a test's ntorque keeps tasks and sends notifications."""

    name: str
    database_url: str
    redis_url: str = ""
    redis_channel: str = field(default_factory=lambda: services.unique_name("ntorque_channel"))

    def environ(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.database_url, "NTORQUE_REDIS_CHANNEL": self.redis_channel}
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[services.PostgresDatabases]:
    try:
        services.postgres_admin("SELECT 1")
    except Exception as error:  # only a server we cannot reach is "missing"
        services.missing("PostgreSQL", error)
    databases = services.PostgresDatabases()
    databases.setup()  # a migration that fails is an error of every test using it
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        services.check_redis()
    except Exception as error:
        services.missing("Redis", error)
    return services.REDIS_URL


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each backend starts from a copy of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "ntorque.db"
    database.upgrade(f"sqlite:///{path}")
    return path


def make_backend(request: pytest.FixtureRequest, name: str, directory: Path) -> Backend:
    if name == "sqlite":
        path = directory / "ntorque.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return Backend("sqlite", f"sqlite:///{path}")
    databases = request.getfixturevalue("postgres_databases")
    return Backend("postgres", databases.new(), request.getfixturevalue("redis_url"))


def give_back(request: pytest.FixtureRequest, backend: Backend) -> None:
    """A PostgreSQL database goes back to the pool once its test is done."""
    if backend.name == "postgres":
        request.getfixturevalue("postgres_databases").give_back(backend.database_url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, migrated backend for one test: SQLite + in-process, or PostgreSQL + Redis."""
    made = make_backend(request, request.param, tmp_path)
    yield made
    give_back(request, made)


@pytest.fixture
def both_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Backend]]:
    """A fresh backend of each kind, for a scenario run on both side by side."""
    made = []
    for name in BACKENDS:
        (tmp_path / name).mkdir()
        made.append(make_backend(request, name, tmp_path / name))
    yield made
    for each in made:
        give_back(request, each)


def side_by_side(*scenarios: Callable[[], object], stagger_s: float = 0.0) -> None:
    """Run scenarios at once, each on a thread of its own, and wait for all of
    them; re-raise the first one's failure. For process scenarios that spend
    most of their time waiting (for slow hooks, an outage, a lease): their own
    processes, databases and Redis lists keep them apart. With stagger_s, the
    n-th starts n * stagger_s after the first, so their processes do not all
    start (and import) at once on a small machine."""

    def delayed(delay_s: float, scenario: Callable[[], object]) -> object:
        time.sleep(delay_s)
        return scenario()

    with concurrent.futures.ThreadPoolExecutor(len(scenarios)) as pool:
        futures = [
            pool.submit(delayed, number * stagger_s, scenario)
            for number, scenario in enumerate(scenarios)
        ]
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """Like `backend`, shared by a module's tests (one server per backend)."""
    made = make_backend(request, request.param, tmp_path_factory.mktemp(request.param))
    yield made
    give_back(request, made)


@pytest.fixture(scope="session")
def hooks() -> Iterator[HookServer]:
    """A recording web-hook server on 127.0.0.1; tests use unique paths."""
    with HookServer() as server:
        yield server


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throw-away CA and a certificate it issued for 127.0.0.1 and localhost."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_hooks(tls: TLSFiles) -> Iterator[HookServer]:
    """Like `hooks`, over HTTPS: only the throw-away CA vouches for its certificate."""
    with HookServer(tls=tls) as server:
        yield server


@contextlib.contextmanager
def postgres_cluster(
    request: pytest.FixtureRequest, directory: Path, count: int, **settings: str
) -> Iterator[list[NtorqueServer]]:
    """count ntorque processes on one PostgreSQL database and Redis list, all
    with the first one's API key (it makes the default application)."""
    shared = make_backend(request, "postgres", directory)
    started = [server_for(shared, directory / f"node{n}", **settings) for n in range(count)]
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(started[0])
        for node in started[1:]:
            stack.enter_context(node)
            node.key = first.key
        yield started


def server_for(
    backend: Backend, workdir: Path, args: tuple[str, ...] = (), **settings: str
) -> NtorqueServer:
    """An ntorque subprocess on this backend; settings are environment variables."""
    return NtorqueServer(workdir, {**backend.environ(), **settings}, args)


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's (migrated) backend."""
    made = database.make_engine(Settings(database_url=backend.database_url))
    try:
        yield made
    finally:
        await made.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    """The store on this test's backend."""
    return Store(engine)


def live_for(backend: Backend, **settings: Any) -> LiveNode:
    """An in-process node on this backend (`async with live_for(...) as node`);
    settings are Settings fields (loops=False and clock= drive it by hand)."""
    return LiveNode(backend.database_url, backend.redis_url, backend.redis_channel, **settings)


@pytest.fixture(params=["local", "redis"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    """A notification channel: in-process, or a Redis list of its own."""
    if request.param == "local":
        local = LocalChannel()
        yield local
        await local.close()
        return
    url: str = request.getfixturevalue("redis_url")
    name = services.unique_name("ntorque_test_channel")
    remote = RedisChannel(url, name)
    try:
        yield remote
    finally:
        await remote.close()
        client = redis.from_url(url)
        await client.delete(name)
        await client.aclose()


# -- the fault suite's summary, across test workers -------------------------------
# A scenario's summary line is made in the worker that ran it; it travels to
# the process that prints the run's summary on its test's report.

FAULT_SUMMARY = "fault summary"
_fault_lines: list[str] = []
_attached = 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    global _attached
    report = yield
    if report.when == "call" and len(SUMMARIES) > _attached:
        report.user_properties.extend((FAULT_SUMMARY, line) for line in SUMMARIES[_attached:])
        _attached = len(SUMMARIES)
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _fault_lines.extend(value for name, value in report.user_properties if name == FAULT_SUMMARY)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _fault_lines:
        terminalreporter.section("fault suite")
        for line in _fault_lines:
            terminalreporter.write_line(line)
