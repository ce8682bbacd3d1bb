"""The statements of ntorque.outbox (the transactional outbox of the clients). They run on the
caller's own connection, inside the caller's transaction, so a task exists
exactly when the caller's other changes commit.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from ..keys import KEY_HASH_SECRET, stored_hashes
from ..tables import tasks
from ..tasks import NewTask
from .apps import ACTIVE_APP_BY_KEY_HASHES, SERVER_SECRET
from .rows import task_values

INSERT_ONE = tasks.insert().returning(tasks.c.id)


async def insert_task(conn: AsyncConnection, spec: NewTask, now: float) -> int:
    """Write a pending task, due now; its id (committed with the caller's transaction)."""
    return int((await conn.execute(INSERT_ONE, task_values(spec, now))).scalar_one())


async def active_app_id(conn: AsyncConnection, key: str) -> int | None:
    """The id of the active application whose API key this is, or None."""
    secret = (await conn.execute(SERVER_SECRET, {"name": KEY_HASH_SECRET})).scalar()
    hashes = stored_hashes(None if secret is None else str(secret), key)
    app_id = (await conn.execute(ACTIVE_APP_BY_KEY_HASHES, {"hashes": hashes})).scalar()
    return None if app_id is None else int(app_id)
