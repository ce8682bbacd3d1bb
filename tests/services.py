"""The real PostgreSQL and Redis the tests run against.

A test that needs one fails under CI (CI=true) when it is missing, and is
skipped elsewhere. PostgreSQL tests get a fresh database each, copied from a
template migrated once per session (CREATE DATABASE ... TEMPLATE).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import pytest
import redis

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get(
    "NTORQUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NTORQUE_TEST_REDIS", "redis://127.0.0.1:6379/0")
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, error: Exception) -> None:
    """Fail under CI, skip elsewhere."""
    message = f"{what} is not reachable ({error})"
    if UNDER_CI:
        pytest.fail(f"{message}: CI must provide it", pytrace=False)
    pytest.skip(message)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on a loop of its own (safe inside async tests)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin(*statements: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def postgres_admin(*statements: str) -> None:
    run_async(_admin(*statements))


def database_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class PostgresDatabases:
    """Migrated databases for tests: copied from one migrated template, and
    handed out again, emptied, once a test has given one back. Creating and
    dropping a database costs about a second (DROP forces a checkpoint);
    emptying one costs a few milliseconds."""

    def __init__(self) -> None:
        self.template = unique_name("ntorque_template")
        self.created: list[str] = []
        self.free: list[str] = []

    def setup(self) -> None:
        from ntorque.store import engine as database

        postgres_admin(f"CREATE DATABASE {self.template}")
        database.upgrade(database_url(self.template))

    def new(self, migrated: bool = True) -> str:
        if migrated and self.free:
            name = self.free.pop()
            run_async(_emptied(name))
            return database_url(name)
        name = unique_name("ntorque_test")
        template = f" TEMPLATE {self.template}" if migrated else ""
        postgres_admin(f"CREATE DATABASE {name}{template}")
        self.created.append(name)
        return database_url(name)

    def give_back(self, url: str) -> None:
        """A migrated database the test is done with (its nodes all stopped)."""
        name = url.rpartition("/")[2]
        if name in self.created and name not in self.free:
            self.free.append(name)

    def drop_all(self) -> None:
        drops = [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in self.created]
        postgres_admin(*drops, f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")


async def _emptied(name: str) -> None:
    """The database as the template left it: every table empty, ids from 1."""
    from ntorque.tables import metadata

    await _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    connection = await asyncpg.connect(database_url(name), timeout=5)
    try:
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


def check_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
