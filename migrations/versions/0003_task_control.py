"""Task control: a cancelled status, per-task retries and backoff, a fresh
allowance on manual retry, completion callbacks, the Retry-After a hook asked
for, idempotency keys, and the indexes the task listing needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_FINISHED = sa.text("status IN ('completed', 'failed')")
FINISHED = sa.text("status IN ('completed', 'failed', 'cancelled')")
CONSOLE_CANCELLED = "cancelled in the console"  # how 0.1 marked a cancelled task


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("retries", sa.Integer, nullable=True))
        batch.add_column(sa.Column("backoff", sa.String(16), nullable=True))
        batch.add_column(
            sa.Column("attempts_before", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("callback_url", sa.Text, nullable=True))
        batch.add_column(sa.Column("callback_task_id", Id, nullable=True))
        batch.add_column(sa.Column("callback_of", Id, nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("retry_after_s", sa.Float, nullable=True))
    tasks = sa.table("tasks", sa.column("status", sa.String), sa.column("last_error", sa.Text))
    op.execute(
        tasks.update()
        .where(tasks.c.status == "failed", tasks.c.last_error == CONSOLE_CANCELLED)
        .values(status="cancelled")
    )
    op.drop_index("ix_tasks_modified_finished", "tasks")
    _finished_index(FINISHED)
    _listing_indexes()
    op.create_table(
        "idempotency_keys",
        sa.Column("app_id", Id, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("app_id", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires"])


def _finished_index(condition: sa.TextClause) -> None:
    op.create_index(
        "ix_tasks_modified_finished",
        "tasks",
        ["modified"],
        postgresql_where=condition,
        sqlite_where=condition,
    )


def _listing_indexes() -> None:
    """One index per listing filter, scoped to an application and not (an
    admin's listing); url prefixes need pattern order on PostgreSQL."""
    op.create_index("ix_tasks_app_id_status_id", "tasks", ["app_id", "status", "id"])
    op.create_index("ix_tasks_app_id_created", "tasks", ["app_id", "created"])
    op.create_index(
        "ix_tasks_app_id_url", "tasks", ["app_id", "url"],
        postgresql_ops={"url": "text_pattern_ops"},
    )  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        # Not on SQLite: with no statistics, its planner would take it for
        # the due and cleanup queries over their partial indexes.
        op.create_index("ix_tasks_status_id", "tasks", ["status", "id"])
    op.create_index("ix_tasks_created", "tasks", ["created"])
    op.create_index("ix_tasks_url", "tasks", ["url"], postgresql_ops={"url": "text_pattern_ops"})


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires", "idempotency_keys")
    op.drop_table("idempotency_keys")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_tasks_status_id", "tasks")
    for name in (
        "ix_tasks_url", "ix_tasks_created",
        "ix_tasks_app_id_url", "ix_tasks_app_id_created", "ix_tasks_app_id_status_id",
    ):  # fmt: skip
        op.drop_index(name, "tasks")
    tasks = sa.table("tasks", sa.column("status", sa.String), sa.column("last_error", sa.Text))
    op.execute(
        tasks.update()
        .where(tasks.c.status == "cancelled")
        .values(status="failed", last_error=CONSOLE_CANCELLED)
    )
    op.drop_index("ix_tasks_modified_finished", "tasks")
    _finished_index(OLD_FINISHED)
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("retry_after_s")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "callback_of", "callback_task_id", "callback_url", "attempts_before",
            "backoff", "retries",
        ):  # fmt: skip
            batch.drop_column(column)
