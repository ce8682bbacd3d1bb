"""Requeue and cleanup run on one node at a time, and move when it dies."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque import config
from ntorque.store import Leadership
from ntorque.store import engine as database
from tests import services
from tests.conftest import Backend, make_backend


def engine_for(url: str) -> AsyncEngine:
    return database.make_engine(config.Settings(database_url=url))


@pytest.fixture
def postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "postgres", tmp_path)


async def test_one_leader_at_a_time_and_it_moves_when_it_dies(postgres: Backend) -> None:
    engines = [engine_for(postgres.database_url) for _ in range(2)]
    first, second = (Leadership(engine) for engine in engines)
    try:
        assert await first.lead()
        assert await first.lead()  # still held, checked again
        assert not await second.lead()
        name = postgres.database_url.rpartition("/")[2]
        services.postgres_admin(  # the leader's connection dies, as with its process
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        # The next round of the other node takes over (a round may first spend
        # itself on a pooled connection that the same outage closed).
        assert await second.lead() or await second.lead()
        assert not await first.lead()  # it notices, and cannot take the lock back
        assert not await first.lead()
    finally:
        for leadership in (first, second):
            await leadership.release()
        for engine in engines:
            await engine.dispose()


async def test_sqlite_always_leads(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert await Leadership(engine).lead()
    finally:
        await engine.dispose()
