"""Named queues: the queue of each task, the queues' settings and limits,
and (on PostgreSQL) the acquire that enforces them in one round trip.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNFINISHED = sa.text("status IN ('pending', 'in_progress')")


# The guard of every lease, on a task row t (as store/admission.py leasable):
# unfinished, due (a fresh, unscheduled task a little early), attempts left.
def guard(t: str) -> str:
    return f"""
    {t}.status IN ('pending', 'in_progress')
    AND ({t}.due <= p_now
         OR ({t}.retry_count = 0 AND {t}.due = {t}.created AND {t}.due <= p_fresh_due))
    AND {t}.retry_count < {t}.attempts_before + coalesce({t}.retries, p_max_retries)
"""


LEASE = """
    status = 'in_progress', retry_count = tasks.retry_count + 1,
    due = p_lease_from + tasks.timeout_s, modified = p_now
"""

# One call, one round trip. Tasks of queues with no limit first, in one
# statement; when ids are left over, the limited queues among them, each
# under its row's lock (taken in name order, so two acquires never
# deadlock): each statement after
# the lock sees every lease committed before it, so the count of calls in
# flight and the token bucket are exact across nodes. A crashed node's leases
# stop counting when they run out (due <= now). Rows with limited = true were
# leased under a limit; rows with no task tell the caller when a rate-limited
# queue has its next token (wait_until).
ACQUIRE_FUNCTION = f"""
CREATE FUNCTION ntorque_acquire(
    p_ids bigint[], p_now double precision, p_fresh_due double precision,
    p_max_retries integer, p_lease_from double precision
) RETURNS TABLE (
    task tasks, limited boolean, wait_app bigint, wait_queue varchar, wait_until double precision
) LANGUAGE plpgsql AS $$
DECLARE
    q queues;
    v_room bigint;
    v_tokens double precision;
    v_taken bigint;
BEGIN
    RETURN QUERY
    WITH leased AS (
        UPDATE tasks SET {LEASE}
        WHERE tasks.id = ANY(p_ids) AND {guard("tasks")}
          AND NOT EXISTS (
            SELECT 1 FROM queues
            WHERE queues.app_id = coalesce(tasks.app_id, 0) AND queues.name = tasks.queue
              AND (queues.paused OR queues.max_concurrency IS NOT NULL
                   OR queues.rate_per_s IS NOT NULL))
        RETURNING tasks.*
    )
    SELECT leased::tasks, false, NULL::bigint, NULL::varchar, NULL::double precision
    FROM leased;
    GET DIAGNOSTICS v_taken = ROW_COUNT;
    IF v_taken >= cardinality(p_ids) THEN
        RETURN;  -- the usual call: every task taken, none in a limited queue
    END IF;
    FOR q IN
        SELECT * FROM queues
        WHERE (queues.app_id, queues.name) IN (
                SELECT coalesce(t.app_id, 0), t.queue FROM tasks t WHERE t.id = ANY(p_ids))
          AND (queues.paused OR queues.max_concurrency IS NOT NULL
               OR queues.rate_per_s IS NOT NULL)
        ORDER BY queues.app_id, queues.name
        FOR UPDATE
    LOOP
        CONTINUE WHEN q.paused;
        v_room := {2**31};
        IF q.max_concurrency IS NOT NULL THEN
            v_room := q.max_concurrency - (
                SELECT count(*) FROM tasks t
                WHERE t.queue = q.name AND coalesce(t.app_id, 0) = q.app_id
                  AND t.status = 'in_progress' AND t.due > p_now);
        END IF;
        IF q.rate_per_s IS NOT NULL THEN
            v_tokens := least(
                q.burst::double precision,
                q.tokens + greatest(p_now - q.tokens_at, 0) * q.rate_per_s);
            v_room := least(v_room, floor(v_tokens)::bigint);
        END IF;
        v_taken := 0;
        IF v_room > 0 THEN
            RETURN QUERY
            WITH chosen AS (
                SELECT t.id FROM tasks t
                WHERE t.id = ANY(p_ids) AND t.queue = q.name
                  AND coalesce(t.app_id, 0) = q.app_id AND {guard("t")}
                ORDER BY t.due, t.id
                LIMIT v_room
                FOR UPDATE
            ), leased AS (
                UPDATE tasks SET {LEASE}
                FROM chosen WHERE tasks.id = chosen.id
                RETURNING tasks.*
            )
            SELECT leased::tasks, true, NULL::bigint, NULL::varchar, NULL::double precision
            FROM leased;
            GET DIAGNOSTICS v_taken = ROW_COUNT;
        END IF;
        IF q.rate_per_s IS NOT NULL THEN
            v_tokens := v_tokens - v_taken;
            UPDATE queues SET tokens = v_tokens, tokens_at = greatest(p_now, q.tokens_at)
            WHERE queues.app_id = q.app_id AND queues.name = q.name;
            IF v_tokens < 1 THEN
                RETURN QUERY SELECT NULL::tasks, false, q.app_id, q.name,
                    greatest(p_now, q.tokens_at) + (1 - v_tokens) / q.rate_per_s;
            END IF;
        END IF;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("queue", sa.String(64), nullable=False, server_default="default")
        )
    op.create_index(
        "ix_tasks_queue_due_unfinished", "tasks", ["queue", "due"],
        postgresql_where=UNFINISHED, sqlite_where=UNFINISHED,
    )  # fmt: skip
    op.create_table(
        "queues",
        sa.Column("app_id", Id, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("max_concurrency", sa.Integer, nullable=True),
        sa.Column("rate_per_s", sa.Float, nullable=True),
        sa.Column("burst", sa.Integer, nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("backoff", sa.String(16), nullable=True),
        sa.Column("timeout_s", sa.Integer, nullable=True),
        sa.Column("tokens", sa.Float, nullable=False, server_default="0"),
        sa.Column("tokens_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("modified", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("app_id", "name", name="pk_queues"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ACQUIRE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ntorque_acquire")
    op.drop_table("queues")
    op.drop_index("ix_tasks_queue_due_unfinished", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("queue")
