"""python -m bench listing [--rows N] [--database-url URL]

Issue 12's listing target: every filter combination of `GET /tasks` (and of
the bulk cancel and retry, which walk the same selection) is served by an
index, shown by EXPLAIN on a 1,000,000-row table.

The bench creates a database, migrates it (ntorque's own migrations), fills
`tasks` with N rows by one INSERT ... SELECT generate_series (four
applications, five statuses, ten url hosts, created times over 30 days in id
order), ANALYZEs it, then runs EXPLAIN (ANALYZE, FORMAT JSON) of the store's
listing statements (a page, a bulk batch of ids) for each combination of
the filters (status, url_prefix, created_after, created_before), scoped to
one application and unscoped (an admin), on the first page and on a later
one (a keyset cursor), with values matching many rows and very few. It
prints one line each and exits 1 when any plan reads `tasks` with a Seq
Scan. The database is dropped at the end.

Unlike the other scenarios this one imports ntorque (its migrations and its
store's listing, bench/listing_queries.py): what is EXPLAINed is what the
server sends.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from . import postgres, report
from .listing_queries import FILTERS, KINDS, Listing, Statements

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "listing.json"
DAY_S = 86400.0
SPAN_S = 30 * DAY_S  # created times spread over the last 30 days, in id order

APPLICATIONS = """
INSERT INTO applications (name, key_hash, active, created, admin)
SELECT 'bench-' || a, md5('bench-' || a), true, $1, a = 1 FROM generate_series(1, 4) AS a
"""
# App shares 60/25/10/5 %; statuses completed 85 %, failed 7.5 %, cancelled 4 %,
# pending 3 %, in_progress 0.5 %; ten url hosts; each drawn independently
# (random(), seeded); created rising with the id, as it does in a real table.
FILL_TASKS = """
INSERT INTO tasks (app_id, url, method, timeout_s, body, content_type, charset, headers,
                   status, retry_count, due, created, modified, last_status_code, last_error)
SELECT (SELECT min(id) FROM applications) + CASE WHEN r.app < 0.6 THEN 0
            WHEN r.app < 0.85 THEN 1 WHEN r.app < 0.95 THEN 2 ELSE 3 END,
       'https://hooks' || floor(r.host * 10) || '.example.com/app/' || (r.g % 1000),
       'POST', 60, '\\x7b7d'::bytea, 'application/json', 'utf-8', '[]',
       CASE WHEN r.status < 0.85 THEN 'completed' WHEN r.status < 0.925 THEN 'failed'
            WHEN r.status < 0.965 THEN 'cancelled' WHEN r.status < 0.995 THEN 'pending'
            ELSE 'in_progress' END,
       1, $1 + r.g * $3::float8, $1 + r.g * $3::float8, $1 + r.g * $3::float8, 200, NULL
FROM (SELECT g, random() AS app, random() AS host, random() AS status
      FROM generate_series(1, $2::int) AS g) AS r
"""


async def fill(url: str, rows: int, start: float) -> float:
    """The applications and `rows` tasks, then ANALYZE; seconds taken."""
    began = time.monotonic()
    connection = await asyncpg.connect(postgres.plain(url), timeout=10)
    try:
        await postgres.skip_foreign_key_checks(connection)
        await connection.execute("SELECT setseed(0.12)")  # the same table every run
        await connection.execute(APPLICATIONS, start)
        await connection.execute(FILL_TASKS, start, rows, SPAN_S / rows)
        await connection.execute("ANALYZE applications; ANALYZE tasks")
    finally:
        await connection.close()
    return time.monotonic() - began


@dataclass(frozen=True)
class Plan:
    values: str  # which set of filter values: "common" or "rare"
    kind: str  # "page" (GET /tasks) or "ids" (a batch of a bulk action)
    listing: Listing
    top: str  # the nodes from the top down to the first one reading tasks
    indexes: list[str]  # the indexes of tasks the plan reads
    seq_scan: bool
    rows_read: int  # rows of tasks read: returned by its scans + removed by their filters
    ms: float
    rows: int
    generic_seq_scan: bool = False  # the generic plan (values unknown) has a Seq Scan of tasks
    sql: str = ""


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def on_tasks(node: dict[str, Any]) -> bool:
    index = str(node.get("Index Name", ""))
    return node.get("Relation Name") == "tasks" or index.startswith(("ix_tasks", "pk_tasks"))


def label(node: dict[str, Any]) -> str:
    backward = " Backward" if node.get("Scan Direction") == "Backward" else ""
    return f"{node['Node Type']}{backward}"


def top_down(root: dict[str, Any]) -> str:
    path, node = [label(root)], root
    while not on_tasks(node) and node.get("Plans"):
        node = node["Plans"][0]
        path.append(label(node))
    return " > ".join(path)


def rows_read(node: dict[str, Any]) -> int:
    """What a scan of the tasks heap went through (0 for the index-only parts of a
    bitmap). EXPLAIN shows each figure averaged over the loops (parallel workers)."""
    if node.get("Relation Name") != "tasks":
        return 0
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return round(float(node["Actual Rows"] + removed) * float(node["Actual Loops"]))


def summary(values: str, kind: str, listing: Listing, explained: dict[str, Any]) -> Plan:
    root = explained["Plan"]
    reading = [node for node in nodes(root) if on_tasks(node)]
    indexes = sorted({str(node["Index Name"]) for node in reading if "Index Name" in node})
    seq = any("Seq Scan" in node["Node Type"] for node in reading)
    return Plan(values, kind, listing, top_down(root), indexes, seq, sum(map(rows_read, reading)),
                round(float(explained["Execution Time"]), 2), int(root["Actual Rows"]))  # fmt: skip


async def explain(
    connection: asyncpg.Connection, statements: Statements, values: str, kind: str,
    listing: Listing,
) -> Plan:  # fmt: skip
    sql, params = await statements.statement(kind, listing)
    found = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
    plan = summary(values, kind, listing, _document(found))
    generic = await generic_plan(connection, sql, len(params))
    seq = any("Seq Scan" in node["Node Type"] for node in nodes(generic["Plan"]) if on_tasks(node))
    return dataclasses.replace(plan, generic_seq_scan=seq, sql=" ".join(sql.split()))


def _document(found: Any) -> dict[str, Any]:
    return dict((json.loads(found) if isinstance(found, str) else found)[0])


async def generic_plan(connection: asyncpg.Connection, sql: str, count: int) -> dict[str, Any]:
    """The plan PostgreSQL may switch to once a prepared statement (asyncpg
    prepares every statement) has run five times: planned without the values."""
    async with connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE bench_listing AS {sql}")
        try:
            nulls = ", ".join(["NULL"] * count)  # a generic plan does not look at them
            found = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE bench_listing({nulls})"
            )
        finally:
            await connection.execute("DEALLOCATE bench_listing")
    return _document(found)


def value_sets(first_app: int, start: float) -> dict[str, tuple[int, dict[str, Any]]]:
    """Filter values matching many rows (the largest application) or very few (the smallest)."""
    common = {
        "status": "failed",
        "url_prefix": "https://hooks3.example.com/",
        "created_after": start + 12 * DAY_S,
        "created_before": start + 20 * DAY_S,
    }
    rare = {
        "status": "in_progress",
        "url_prefix": "https://hooks7.example.com/app/42",
        "created_after": start + 14 * DAY_S,
        "created_before": start + 14 * DAY_S + 3600,
    }
    return {"common": (first_app, common), "rare": (first_app + 3, rare)}  # fmt: skip


def listings(first_app: int, start: float, cursor: int) -> Iterator[tuple[str, str, Listing]]:
    """Every filter combination, scoped and unscoped, first page and a later one,
    for a listing and for a bulk action's batch."""
    for name, (app_id, values) in value_sets(first_app, start).items():
        for kind, scope, page in itertools.product(KINDS, (app_id, None), (None, cursor)):
            for chosen in itertools.product((False, True), repeat=len(FILTERS)):
                given = {key: values[key] for key, on in zip(FILTERS, chosen, strict=True) if on}
                yield name, kind, Listing(app_id=scope, cursor=page, **given)


def wide(plan: Plan, table_rows: int) -> bool:
    """The plan reads more than 1 % of the table (and over 10 pages) for one page."""
    return plan.rows_read > max(table_rows // 100, 10 * (plan.listing.limit + 1))


def line(plan: Plan, table_rows: int) -> str:
    listing = plan.listing
    scope = "admin" if listing.app_id is None else f"app={listing.app_id}"
    flags = " ".join(name if getattr(listing, name) is not None else "-" * len(name)
                     for name in FILTERS)  # fmt: skip
    page = "next " if listing.cursor else "first"
    verdict = "SEQ SCAN" if plan.seq_scan else "wide    " if wide(plan, table_rows) else "index   "
    reads = f"{plan.top} ({', '.join(plan.indexes) or 'no index'})"
    figures = f"{plan.ms:8.2f} ms  {plan.rows:3d} rows  read {plan.rows_read:7d}"
    return (
        f"{plan.values:6}  {plan.kind:4}  {scope:5}  {flags}  {page}  {verdict}  {figures}  {reads}"
    )


async def run(url: str, rows: int) -> dict[str, Any]:
    start = time.time() - SPAN_S
    fill_s = await fill(url, rows, start)
    connection = await asyncpg.connect(postgres.plain(url), timeout=10)
    statements = Statements(url)
    try:
        first_app = int(await connection.fetchval("SELECT min(id) FROM applications"))
        plans = [await explain(connection, statements, *chosen)
                 for chosen in listings(first_app, start, cursor=rows // 2)]  # fmt: skip
        sizes = await postgres.table_sizes(connection, ("tasks",))
    finally:
        await statements.close()
        await connection.close()
    return {"rows": rows, "fill_s": round(fill_s, 1), "table": sizes, "plans": plans}


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench listing",
                                     description=__doc__.split("\n\n")[1])  # fmt: skip
    parser.add_argument("--rows", type=int, default=1_000_000, help="tasks (1,000,000)")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL admin url; the bench creates and drops its database",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parsed = parser.parse_args(argv)
    if parsed.rows < 10:
        parser.error("--rows must be at least 10")
    return parsed  # fmt: skip


def migrate(url: str) -> None:
    from ntorque.store.engine import upgrade  # the server's own schema, at its newest

    upgrade(url)


def main(argv: list[str]) -> int:
    args = options(argv)
    try:
        url = asyncio.run(postgres.create(args.database_url))
    except Exception as error:  # asyncpg's or the network's: PostgreSQL is missing
        print(f"bench: PostgreSQL is not reachable: {error}", file=sys.stderr)
        return 2
    try:
        migrate(url)
        result = asyncio.run(run(url, args.rows))
    finally:
        asyncio.run(postgres.drop(args.database_url, url))
    plans: list[Plan] = result["plans"]
    print(f"listing  {args.rows:,} rows ({result['table']}; filled in {result['fill_s']} s)")
    for plan in plans:
        print(line(plan, args.rows))
    scans = sum(plan.seq_scan for plan in plans)
    wides = sum(wide(plan, args.rows) and not plan.seq_scan for plan in plans)
    print(
        f"{'FAIL' if scans else 'PASS'}  every filter combination served by an index "
        f"(issue 12): {len(plans) - scans} of {len(plans)} plans without a Seq Scan on tasks"
    )
    print(f"note  {wides} plan(s) read more than 1 % of the table through an index (wide)")
    generic = [plan for plan in plans if plan.generic_seq_scan]
    print(f"note  {len(generic)} generic plan(s) (a prepared statement after 5 runs may use "
          f"one) with a Seq Scan on tasks" + "".join(f"\n      {line(p, args.rows)[:76]}"
                                                      for p in generic))  # fmt: skip
    result["plans"] = [{**vars(plan), "listing": vars(plan.listing)} for plan in plans]
    report.write(args.json, {**report.machine(), "options": {"rows": args.rows},
                             "listing": result})  # fmt: skip
    print(f"written to {args.json}")
    return 1 if scans else 0
