"""Alembic environment: runs migrations over the asyncio engine.

On PostgreSQL an advisory lock makes several nodes starting with --migrate
take turns; on SQLite, batch mode lets ALTER work.
"""

from __future__ import annotations

import asyncio

from alembic import context
from alembic.runtime.migration import MigrationInfo
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ntorque.tables import metadata

MIGRATION_LOCK = 0x6E746F72  # "ntor"


def applied(*, step: MigrationInfo, **_: object) -> None:
    """Tell the caller (ntorque.store.engine.upgrade) which revisions ran."""
    if step.is_upgrade and not step.is_stamp and step.up_revision_id is not None:
        context.config.attributes.setdefault("applied", []).append(step.up_revision_id)


def run_with(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if not sqlite:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        on_version_apply=[applied],
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"), target_metadata=metadata
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
