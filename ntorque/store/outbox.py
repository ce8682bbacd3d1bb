"""The statements of ntorque.outbox (the transactional outbox of the clients). They run on the
caller's own connection, inside the caller's transaction, so a task exists
exactly when the caller's other changes commit.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from ..keys import KEY_HASH_SECRET, stored_hashes
from ..tasks import NewTask
from .apps import ACTIVE_APP_BY_KEY_HASHES, SERVER_SECRET
from .rows import insert_tasks


async def insert_task(
    conn: AsyncConnection, spec: NewTask, now: float, default_timeout_s: int
) -> int:
    """Write a pending task, due now; its id (committed with the caller's transaction)."""
    return (await insert_tasks(conn, [spec], now, default_timeout_s))[0].id


async def active_app_id(conn: AsyncConnection, key: str) -> int | None:
    """The id of the active application whose API key this is, or None."""
    secret = (await conn.execute(SERVER_SECRET, {"name": KEY_HASH_SECRET})).scalar()
    hashes = stored_hashes(None if secret is None else str(secret), key)
    app_id = (await conn.execute(ACTIVE_APP_BY_KEY_HASHES, {"hashes": hashes})).scalar()
    return None if app_id is None else int(app_id)
