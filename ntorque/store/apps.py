"""Applications (keys as hashes, signing secrets, target policies) and the
secrets every node shares. Rows come back as plain dicts; `auth` and
`applications` give them meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..tables import applications, server_secrets
from .base import Database, row_dict


class AppStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, name: str, key_hash: str, now: float, signing_secret: str | None = None
    ) -> dict[str, Any] | None:
        """A new active application; None when the name (or key) is taken."""
        values = {
            "name": name, "key_hash": key_hash, "active": True, "created": now,
            "signing_secret": signing_secret,
        }  # fmt: skip
        statement = applications.insert().values(values).returning(*applications.c)
        try:
            async with self.db.begin() as conn:
                row = (await conn.execute(statement)).one()
        except sa.exc.IntegrityError:
            return None
        return dict(row._mapping)

    async def by_key_hash(self, key_hash: str) -> dict[str, Any] | None:
        return await self._one(applications.c.key_hash == key_hash)

    async def by_name(self, name: str) -> dict[str, Any] | None:
        return await self._one(applications.c.name == name)

    async def by_id(self, app_id: int) -> dict[str, Any] | None:
        return await self._one(applications.c.id == app_id)

    async def _one(self, where: sa.ColumnElement[bool]) -> dict[str, Any] | None:
        async with self.db.begin() as conn:
            return row_dict((await conn.execute(applications.select().where(where))).first())

    async def list(self) -> list[dict[str, Any]]:
        statement = applications.select().order_by(applications.c.id)
        async with self.db.begin() as conn:
            return [dict(row._mapping) for row in (await conn.execute(statement)).all()]

    async def count(self) -> int:
        statement = sa.select(sa.func.count()).select_from(applications)
        async with self.db.begin() as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def update(self, name: str, **values: Any) -> bool:
        """Change the named application's columns; False when there is none."""
        statement = applications.update().where(applications.c.name == name).values(**values)
        async with self.db.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def replace_key_hash(self, old: str, new: str) -> bool:
        """Re-hash one key (a legacy plain hash becomes the keyed one)."""
        statement = applications.update().where(applications.c.key_hash == old).values(key_hash=new)
        async with self.db.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def target_policy(self, app_id: int) -> dict[str, Any] | None:
        """The application's own target policy ({"allow": [...], "deny": [...]}), if any."""
        statement = sa.select(applications.c.target_policy).where(applications.c.id == app_id)
        async with self.db.begin() as conn:
            policy = (await conn.execute(statement)).scalar()
        return dict(policy) if isinstance(policy, dict) else None

    async def signing_secrets(self, app_id: int, make: Callable[[], str]) -> tuple[str, ...]:
        """The application's signing secrets, current first; an application
        without one (made by hand) gets make()'s, once."""
        current, previous = applications.c.signing_secret, applications.c.previous_signing_secret
        chosen = sa.select(current, previous).where(applications.c.id == app_id)
        unsigned = applications.update().where(applications.c.id == app_id, current.is_(None))
        async with self.db.begin() as conn:
            row = (await conn.execute(chosen)).first()
            if row is not None and row[0] is None:
                await conn.execute(unsigned.values(signing_secret=make()))
                row = (await conn.execute(chosen)).first()
        return tuple(secret for secret in (row or ()) if secret)

    async def rotate_signing_secret(self, name: str, new: str) -> bool:
        """The current secret becomes the previous one (both sign until
        finish_rotation) and `new` the current one, in one statement."""
        rotated = {"previous_signing_secret": applications.c.signing_secret, "signing_secret": new}
        return await self.update(name, **rotated)

    async def finish_rotation(self, name: str) -> bool:
        """Only the current secret signs from now on."""
        return await self.update(name, previous_signing_secret=None)

    async def server_secret(self, name: str, make: Callable[[], str], now: float) -> str:
        """The shared secret called name; the first node to ask stores make()'s."""
        async with self.db.begin() as conn:
            value = (await conn.execute(SERVER_SECRET, {"name": name})).scalar_one_or_none()
        if value is not None:
            return str(value)
        try:
            async with self.db.begin() as conn:
                row = {"name": name, "value": make(), "created": now}
                await conn.execute(server_secrets.insert().values(row))
        except sa.exc.IntegrityError:  # another node stored one first: use theirs
            pass
        async with self.db.begin() as conn:
            return str((await conn.execute(SERVER_SECRET, {"name": name})).scalar_one())


SERVER_SECRET = sa.select(server_secrets.c.value).where(
    server_secrets.c.name == sa.bindparam("name")
)
ACTIVE_APP_BY_KEY_HASHES = sa.select(applications.c.id).where(
    applications.c.key_hash.in_(sa.bindparam("hashes", expanding=True)), applications.c.active
)
