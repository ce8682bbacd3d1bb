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
    """Fresh databases copied from one migrated template."""

    def __init__(self) -> None:
        self.template = unique_name("ntorque_template")
        self.created: list[str] = []

    def setup(self) -> None:
        from ntorque.store import engine as database

        postgres_admin(f"CREATE DATABASE {self.template}")
        database.upgrade(database_url(self.template))

    def new(self, migrated: bool = True) -> str:
        name = unique_name("ntorque_test")
        template = f" TEMPLATE {self.template}" if migrated else ""
        postgres_admin(f"CREATE DATABASE {name}{template}")
        self.created.append(name)
        return database_url(name)

    def drop_all(self) -> None:
        drops = [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in self.created]
        postgres_admin(*drops, f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")


def check_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
