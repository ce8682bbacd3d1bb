"""The bench's own PostgreSQL database: created fresh per scenario from an
admin url, prefilled with finished tasks by plain SQL, EXPLAINed, dropped.

The statements EXPLAINed mirror the shapes of ntorque/store.py's hot and
periodic queries (enqueue, acquire, settle, get; due ids, expire, cleanup);
they are written out here, not imported, so the bench keeps working whatever
ntorque's internals become. Update them when the store's queries change.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import redis


def plain(url: str) -> str:
    """asyncpg wants postgresql://, without SQLAlchemy's +driver suffix."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def with_database(url: str, name: str) -> str:
    base, _, _ = plain(url).rpartition("/")
    return f"{base}/{name}"


async def _admin(admin_url: str, statement: str) -> None:
    connection = await asyncpg.connect(plain(admin_url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def ping(admin_url: str) -> None:
    await _admin(admin_url, "SELECT 1")


async def create(admin_url: str) -> str:
    """A new empty database; its url."""
    name = f"ntorque_bench_{uuid.uuid4().hex[:10]}"
    await _admin(admin_url, f"CREATE DATABASE {name}")
    return with_database(admin_url, name)


async def drop(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    await _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Finished tasks of the default application, one attempt each, spread over the
# last ~14 hours (younger than cleanup_after_days, so cleanup leaves them).
PREFILL_TASKS = """
INSERT INTO tasks (app_id, url, method, timeout_s, body, content_type, charset, headers,
                   status, retry_count, due, created, modified, last_status_code, last_error)
SELECT (SELECT min(id) FROM applications), 'http://127.0.0.1:9/hooks/prefilled', 'POST', 60,
       convert_to('{"t": 0, "n": ' || g || '}', 'UTF8'), 'application/json', 'utf-8',
       '[]', CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'completed' END, 1,
       $1 - g * 0.05, $1 - g * 0.05 - 0.2, $1 - g * 0.05,
       CASE WHEN g % 50 = 0 THEN 410 ELSE 200 END, NULL
FROM generate_series(1, $2::int) AS g
"""
PREFILL_ATTEMPTS = """
INSERT INTO attempts (task_id, number, started, duration_s, status_code, error)
SELECT id, 1, created + 0.1, 0.01, last_status_code, NULL FROM tasks WHERE id <= $1
"""


async def skip_foreign_key_checks(connection: asyncpg.Connection) -> None:
    """Two million foreign-key trigger calls double the prefill's time; every
    key inserted exists, so a superuser may skip them (others just wait)."""
    try:
        await connection.execute("SET session_replication_role = replica")
    except asyncpg.InsufficientPrivilegeError:
        pass


async def prefill(url: str, rows: int) -> float:
    """Insert `rows` finished tasks (ids 1..rows) and their attempts, then ANALYZE; seconds."""
    started = time.monotonic()
    connection = await asyncpg.connect(plain(url), timeout=10)
    try:
        await skip_foreign_key_checks(connection)
        await connection.execute(PREFILL_TASKS, time.time() - 60, rows)
        await connection.execute(PREFILL_ATTEMPTS, rows)
        await connection.execute("ANALYZE tasks; ANALYZE attempts")
    finally:
        await connection.close()
    return time.monotonic() - started


UNFINISHED = "status IN ('pending', 'in_progress')"
FINISHED = "status IN ('completed', 'failed')"
HOT_QUERIES = {
    "enqueue (insert)": """INSERT INTO tasks (app_id, url, method, timeout_s, body,
        content_type, charset, headers, status, retry_count, due, created, modified)
        VALUES (1, 'http://127.0.0.1:9/hook', 'POST', 60, '\\x7b7d', 'application/json',
        'utf-8', '[]', 'pending', 0, {now}, {now}, {now}) RETURNING id""",
    "acquire": f"""UPDATE tasks SET status = 'in_progress', retry_count = retry_count + 1,
        due = {{now}} + 2 + timeout_s, modified = {{now}}
        WHERE id = ANY(ARRAY[{{ids}}]::bigint[]) AND {UNFINISHED}
        AND (due <= {{now}} OR (retry_count = 0 AND due <= {{now}} + 1)) AND retry_count < 36
        RETURNING *""",
    "settle (batch)": """WITH batch AS (
        SELECT * FROM unnest(ARRAY[{ids}]::bigint[]) AS b(id)
    ), recorded AS (
        INSERT INTO attempts (task_id, number, started, duration_s, status_code, error)
        SELECT id, 1, {now}, 0.01, 200, NULL FROM batch
        WHERE EXISTS (SELECT 1 FROM tasks WHERE tasks.id = batch.id)
    )
    UPDATE tasks SET status = 'completed', due = {now}, modified = {now},
        last_status_code = 200, last_error = NULL
    FROM batch WHERE tasks.id = batch.id AND tasks.retry_count = 1
        AND tasks.status = 'in_progress' RETURNING tasks.id""",
    "get task": "SELECT * FROM tasks WHERE id = {id}",
    "attempts of a task": "SELECT * FROM attempts WHERE task_id = {id} ORDER BY number",
    "due ids (requeuer)": f"""SELECT id FROM tasks WHERE {UNFINISHED} AND due <= {{now}}
        AND retry_count < 36 ORDER BY due LIMIT 1000""",
    "expire (requeuer)": f"""UPDATE tasks SET status = 'failed', modified = {{now}},
        last_error = 'expired' WHERE {UNFINISHED} AND due <= {{now}} AND retry_count >= 36
        RETURNING id""",
    "cleanup (requeuer)": f"""SELECT id FROM tasks WHERE {FINISHED}
        AND modified < {{week_ago}} ORDER BY modified LIMIT 500""",
}


async def explain(url: str) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each hot query, in a transaction rolled back."""
    connection = await asyncpg.connect(plain(url), timeout=10)
    try:
        last = int(await connection.fetchval("SELECT max(id) FROM tasks") or 1)
        now = time.time()
        values = {
            "now": repr(now),
            "week_ago": repr(now - 7 * 86400),
            "id": str(last),
            "ids": ", ".join(str(last - offset) for offset in range(50)),
        }
        plans = {}
        for name, query in HOT_QUERIES.items():
            plans[name] = await _plan(connection, query.format(**values))
        plans["table sizes"] = await _sizes(connection)
        return plans
    finally:
        await connection.close()


async def _plan(connection: asyncpg.Connection, query: str) -> str:
    transaction = connection.transaction()
    await transaction.start()
    try:
        rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query}")
    finally:
        await transaction.rollback()
    return "\n".join(str(row[0]) for row in rows)


async def _sizes(connection: asyncpg.Connection) -> str:
    return await table_sizes(connection, ("tasks", "attempts"))


async def table_sizes(connection: asyncpg.Connection, tables: tuple[str, ...]) -> str:
    lines = []
    for table in tables:
        count = await connection.fetchval(f"SELECT count(*) FROM {table}")
        size = await connection.fetchval("SELECT pg_size_pretty(pg_total_relation_size($1))", table)
        lines.append(f"{table}: {count:,} rows, {size} with indexes")
    return "\n".join(lines)


async def ping_services(admin_url: str, redis_url: str) -> None:
    """Fail at once, and clearly, when PostgreSQL or Redis is missing."""
    await ping(admin_url)
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        client.ping()
    finally:
        client.close()
