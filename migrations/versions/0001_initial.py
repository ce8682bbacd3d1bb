"""Applications, tasks and their attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNFINISHED = sa.text("status IN ('pending', 'in_progress')")
FINISHED = sa.text("status IN ('completed', 'failed')")


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_applications"),
        sa.UniqueConstraint("name", name="uq_applications_name"),
        sa.UniqueConstraint("key_hash", name="uq_applications_key_hash"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("app_id", Id, nullable=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("timeout_s", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("charset", sa.String(64), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retry_count", sa.Integer, nullable=False),
        sa.Column("due", sa.Float, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("modified", sa.Float, nullable=False),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["applications.id"], name="fk_tasks_app_id_applications"
        ),
        sqlite_autoincrement=True,  # never hand out the id of a deleted task again
    )
    op.create_index(
        "ix_tasks_due_unfinished",
        "tasks",
        ["due"],
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )
    op.create_index("ix_tasks_app_id_id", "tasks", ["app_id", "id"])
    op.create_index(
        "ix_tasks_modified_finished",
        "tasks",
        ["modified"],
        postgresql_where=FINISHED,
        sqlite_where=FINISHED,
    )
    op.create_table(
        "attempts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_attempts_task_id_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_attempts_task_id_number", "attempts", ["task_id", "number"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("tasks")
    op.drop_table("applications")
