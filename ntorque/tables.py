"""SQLAlchemy Core tables, shared by the store package and migrations/env.py.

Times are UTC seconds since the epoch (double precision): the guarded
statements add a task's own timeout to "now" in plain SQL arithmetic that
reads the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

applications = sa.Table(
    "applications",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created", sa.Float, nullable=False),
    # Sees every application's tasks in the console.
    sa.Column("admin", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # Standard Webhooks secrets ("whsec_..."); the previous one is still used
    # to sign during a rotation.
    sa.Column("signing_secret", sa.Text, nullable=True),
    sa.Column("previous_signing_secret", sa.Text, nullable=True),
    # Per-application allow/deny lists of web-hook targets (JSON), or null.
    sa.Column("target_policy", sa.JSON, nullable=True),
)

# Server-wide secrets every node shares (cookie signing, key hashing).
server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

DEFAULT_QUEUE = "default"
UNFINISHED_SQL = "status IN ('pending', 'in_progress')"
FINISHED_SQL = "status IN ('completed', 'failed', 'cancelled')"

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("app_id", Id, sa.ForeignKey("applications.id"), nullable=True),
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
    # The task's own attempt allowance and backoff; null: the server's.
    sa.Column("retries", sa.Integer, nullable=True),
    sa.Column("backoff", sa.String(16), nullable=True),
    # Attempts made before its last manual retry, which gave a fresh allowance.
    sa.Column("attempts_before", sa.Integer, nullable=False, server_default="0"),
    # Completion callbacks: the url told when this task ends, the task that
    # tells it, and (on that task) the task it reports on.
    sa.Column("callback_url", sa.Text, nullable=True),
    sa.Column("callback_task_id", Id, nullable=True),
    sa.Column("callback_of", Id, nullable=True),
    # The named queue it belongs to, in its application's namespace.
    sa.Column("queue", sa.String(64), nullable=False, server_default=DEFAULT_QUEUE),
    # The schedule whose tick made it, and that tick's time.
    sa.Column("schedule_id", Id, nullable=True),
    sa.Column("schedule_tick", sa.Float, nullable=True),
    # Due work, oldest first: the requeuer's and the acquire's query.
    sa.Index(
        "ix_tasks_due_unfinished",
        "due",
        postgresql_where=sa.text(UNFINISHED_SQL),
        sqlite_where=sa.text(UNFINISHED_SQL),
    ),
    # A queue's due work and live leases: the limited acquire counts its
    # calls in flight here, and a queue's wake-up finds its next tasks.
    sa.Index(
        "ix_tasks_queue_due_unfinished",
        "queue",
        "due",
        postgresql_where=sa.text(UNFINISHED_SQL),
        sqlite_where=sa.text(UNFINISHED_SQL),
    ),
    # An application's recent tasks.
    sa.Index("ix_tasks_app_id_id", "app_id", "id"),
    # One task per tick of a schedule, however many nodes fire it (tasks of
    # no schedule have nulls here, which never collide); a schedule's last
    # tasks, newest first.
    sa.Index("ix_tasks_schedule_id_schedule_tick", "schedule_id", "schedule_tick", unique=True),
    # Cleanup of old finished tasks.
    sa.Index(
        "ix_tasks_modified_finished",
        "modified",
        postgresql_where=sa.text(FINISHED_SQL),
        sqlite_where=sa.text(FINISHED_SQL),
    ),
    # The listing's filters, for one application and (an admin's) for all;
    # url prefixes need pattern order on PostgreSQL (LIKE 'prefix%').
    sa.Index("ix_tasks_app_id_status_id", "app_id", "status", "id"),
    sa.Index("ix_tasks_app_id_created", "app_id", "created"),
    sa.Index("ix_tasks_app_id_url", "app_id", "url", postgresql_ops={"url": "text_pattern_ops"}),
    # Not on SQLite: with no statistics, its planner would take it for the
    # due and cleanup queries over their partial indexes.
    sa.Index("ix_tasks_status_id", "status", "id").ddl_if(dialect="postgresql"),
    sa.Index("ix_tasks_created", "created"),
    sa.Index("ix_tasks_url", "url", postgresql_ops={"url": "text_pattern_ops"}),
    sqlite_autoincrement=True,  # never hand out the id of a deleted task again
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("task_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The wait the hook asked for (Retry-After), in seconds.
    sa.Column("retry_after_s", sa.Float, nullable=True),
    sa.Index("ix_attempts_task_id_number", "task_id", "number"),
)

# Idempotency-Key of an enqueue, remembered for a while per application
# (app_id 0 when requests are not authenticated). The primary key is what
# makes a repeat, however concurrent, find the first task.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("app_id", Id, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("task_id", Id, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Index("ix_idempotency_keys_expires", "expires"),
)

# Named queues' settings, per application (app_id 0 when requests are not
# authenticated). A row exists once a task names the queue or it is
# configured; null settings mean "no limit" or "the server's default".
# tokens and tokens_at are the rate limit's bucket, changed only under the
# row's lock by the acquire.
queues = sa.Table(
    "queues",
    metadata,
    sa.Column("app_id", Id, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
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
)

# Recurring schedules, per application (app_id 0 when requests are not
# authenticated): a rule, a task template (JSON), and the next tick no task
# was made for yet. Firing a tick moves next_tick on with a guarded UPDATE
# in the transaction that inserts its task, so one node makes it.
schedules = sa.Table(
    "schedules",
    metadata,
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
    # The due schedules, soonest first: every node's ticker reads this.
    sa.Index(
        "ix_schedules_next_tick_active",
        "next_tick",
        postgresql_where=sa.text("NOT paused"),
        sqlite_where=sa.text("NOT paused"),
    ),
    sa.Index("ix_schedules_app_id_id", "app_id", "id"),
    # A name, when given, is the schedule's handle: a retried create finds it
    # taken (409) instead of making a second schedule that doubles every tick.
    sa.Index("ix_schedules_app_id_name", "app_id", "name", unique=True),
    sqlite_autoincrement=True,
)
