"""The database engine and its schema version (Alembic migrations).

Both backends go through the same SQLAlchemy asyncio engine: asyncpg for
PostgreSQL, aiosqlite for the embedded SQLite file.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import Settings


def async_url(url: str) -> str:
    """The SQLAlchemy asyncio url for a DATABASE_URL as users write it."""
    scheme, sep, rest = url.partition("://")
    driver = {
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
    }.get(scheme, scheme)
    return f"{driver}{sep}{rest}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(settings: Settings) -> AsyncEngine:
    url = async_url(settings.database_url)
    options: dict[str, Any] = {}
    if settings.pool_class == "NullPool":
        options["poolclass"] = sa.pool.NullPool
    else:
        options.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.db_timeout_s,
            pool_recycle=settings.pool_recycle_s,
        )
    if is_sqlite(url):
        options["connect_args"] = {"timeout": settings.db_timeout_s}
    else:
        # Bound connecting and every statement, so an unreachable database
        # turns into a quick 503 instead of a hung request.
        options["connect_args"] = {
            "timeout": settings.db_timeout_s,
            "command_timeout": settings.db_timeout_s * 6,
            "server_settings": {"application_name": "ntorque"},
        }
    # An error's message leaves out the statement's parameters: they hold
    # task bodies, key hashes and secrets, and a logged traceback would show them.
    engine = create_async_engine(url, hide_parameters=True, **options)
    if is_sqlite(url):
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a consumer writes; FULL sync makes a commit
    # survive power loss, which is what "durable before 201" means.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "busy_timeout=10000",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(importlib.resources.files("ntorque.migrations")))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


@dataclass(frozen=True)
class Revision:
    """One schema version: its id and the first paragraph of its docstring."""

    id: str
    message: str

    def __str__(self) -> str:
        return f"{self.id} ({self.message})"


def upgrade(database_url: str) -> list[Revision]:
    """Migrate the schema to the newest version (call outside a running loop);
    the revisions this call applied, oldest first (none: it was up to date)."""
    config = alembic_config(database_url)
    applied: list[str] = []
    config.attributes["applied"] = applied  # migrations/env.py appends to it
    command.upgrade(config, "head")
    scripts = ScriptDirectory.from_config(config)
    return [Revision(rev, _message(scripts, rev)) for rev in applied]


def _message(scripts: ScriptDirectory, revision: str) -> str:
    script = scripts.get_revision(revision)
    return " ".join(script.doc.split()) if script is not None else ""


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
