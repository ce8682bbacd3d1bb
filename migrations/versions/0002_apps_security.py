"""Applications gain an admin flag, Standard Webhooks signing secrets and a
target policy; a table keeps server-wide secrets shared by every node.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("signing_secret", sa.Text, nullable=True))
        batch.add_column(sa.Column("previous_signing_secret", sa.Text, nullable=True))
        batch.add_column(sa.Column("target_policy", sa.JSON, nullable=True))
    # Applications made before signing existed get a secret of their own.
    apps = sa.table("applications", sa.column("id", sa.Integer), sa.column("signing_secret"))
    connection = op.get_bind()
    for (app_id,) in connection.execute(sa.select(apps.c.id)).all():
        connection.execute(
            apps.update().where(apps.c.id == app_id).values(signing_secret=_signing_secret())
        )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_secrets"),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("target_policy")
        batch.drop_column("previous_signing_secret")
        batch.drop_column("signing_secret")
        batch.drop_column("admin")
