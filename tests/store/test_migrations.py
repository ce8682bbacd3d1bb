"""Migrations: 0003 turns the console's old cancellations into `cancelled`,
and the migrated schema is the one tables.py describes. Both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.ext.asyncio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ntorque.store import engine
from ntorque.tables import metadata, tasks
from tests import services
from tests.conftest import BACKENDS

OLD_CANCELLED = "cancelled in the console"


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    databases: services.PostgresDatabases = request.getfixturevalue("postgres_databases")
    return databases.new(migrated=False)


def test_old_console_cancellations_become_cancelled(empty_database: str) -> None:
    config = engine.alembic_config(empty_database)
    command.upgrade(config, "0002")
    rows = [
        ("failed", OLD_CANCELLED),  # cancelled in the console before 0003
        ("failed", "HTTP 404 Not Found"),
        ("completed", None),
    ]
    statements = [
        f"INSERT INTO tasks (url, method, timeout_s, body, content_type, charset, headers, "
        f"status, retry_count, due, created, modified, last_error) VALUES "
        f"('http://x.example/{n}', 'POST', 60, '', 'text/plain', '', '[]', '{status}', 1, "
        f"1, 1, 1, {'NULL' if error is None else repr(error)})"
        for n, (status, error) in enumerate(rows)
    ]
    services.run_async(_execute(empty_database, statements))
    engine.upgrade(empty_database)
    statuses = services.run_async(_fetch(empty_database, "SELECT status FROM tasks ORDER BY id"))
    assert statuses == ["cancelled", "failed", "completed"]


def test_the_migrated_schema_is_what_tables_py_says(empty_database: str) -> None:
    engine.upgrade(empty_database)
    differences = services.run_async(_compare(empty_database))
    assert [each for each in differences if not _not_for_this_dialect(each, empty_database)] == []


def _not_for_this_dialect(difference: object, url: str) -> bool:
    """An index tables.py creates on one dialect only (`ddl_if`), missing on another."""
    if not isinstance(difference, tuple) or difference[0] != "add_index":
        return False
    declared = {index.name: index for index in tasks.indexes}.get(difference[1].name)
    only_on = getattr(getattr(declared, "_ddl_if", None), "dialect", None)
    return only_on is not None and not url.startswith(only_on)


async def _execute(url: str, statements: list[str]) -> None:
    made = sa.ext.asyncio.create_async_engine(engine.async_url(url))
    async with made.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))
    await made.dispose()


async def _fetch(url: str, query: str) -> list[object]:
    made = sa.ext.asyncio.create_async_engine(engine.async_url(url))
    async with made.connect() as conn:
        values = list((await conn.execute(sa.text(query))).scalars())
    await made.dispose()
    return values


async def _compare(url: str) -> list[object]:
    made = sa.ext.asyncio.create_async_engine(engine.async_url(url))
    async with made.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    await made.dispose()
    return list(differences)
