"""Recurring schedules: the schedules table, and on each task the schedule
and tick that made it, unique together (one task per tick, whichever node
fires it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("NOT paused")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("schedule_id", Id, nullable=True))
        batch.add_column(sa.Column("schedule_tick", sa.Float, nullable=True))
    op.create_index(
        "ix_tasks_schedule_id_schedule_tick", "tasks", ["schedule_id", "schedule_tick"],
        unique=True,
    )  # fmt: skip
    op.create_table(
        "schedules",
        sa.Column("id", Id, primary_key=True),
        sa.Column("app_id", Id, nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("every_s", sa.Float, nullable=True),
        sa.Column("anchor", sa.Float, nullable=False),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("template", sa.JSON, nullable=False),
        sa.Column("next_tick", sa.Float, nullable=True),
        sa.Column("last_tick", sa.Float, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("modified", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_schedules_next_tick_active", "schedules", ["next_tick"],
        postgresql_where=ACTIVE, sqlite_where=ACTIVE,
    )  # fmt: skip
    op.create_index("ix_schedules_app_id_id", "schedules", ["app_id", "id"])
    op.create_index("ix_schedules_app_id_name", "schedules", ["app_id", "name"], unique=True)


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_index("ix_tasks_schedule_id_schedule_tick", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("schedule_tick")
        batch.drop_column("schedule_id")
