"""GET /metrics: counters moved by exactly what happened, gauges read from
the database (one cached query), the token, several nodes in one process,
and several processes summed through prometheus-client's multiprocess mode."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, values
from prometheus_client.parser import text_string_to_metric_families

from ntorque import metrics
from ntorque.metrics import Metrics, Scrape
from ntorque.store.metrics import QueueFigures
from ntorque.tasks import Status
from tests.conftest import Backend, live_for, make_backend
from tests.factories import all_statements
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TOKEN = "s3cret-metrics-token-0123"


def parse(text: bytes | str) -> Samples:
    decoded = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(decoded)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(node: LiveNode, key: str) -> Samples:
    response = await node.request("GET", "/metrics", key=key)
    assert response.status == 200, (response.status, response.body)
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST  # text/plain; version=...
    return parse(response.body)


async def test_a_call_moves_the_counters_by_exactly_what_happened(
    backend: Backend, hooks: HookServer
) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        node.running.scrape.cache_s = 0  # every scrape reads (the cache has its own test)
        _, admin = await node.create_app(admin=True)
        path = uuid.uuid4().hex
        for code, queue in ((200, "default"), (503, "mail"), (404, "mail")):
            await node.enqueue(hooks.url(f"/status/{code}/{path}"), queue=queue)
        await node.enqueue(hooks.url(f"/status/200/{path}"), queue="mail", delay=3600)
        bad = await node.request("POST", "/?url=" + quote("ftp://nowhere"))
        assert bad.status == 400
        clock.advance(5)
        before = await scrape(node, admin)
        assert value(before, "ntorque_tasks_enqueued_total", queue="default") == 1
        assert value(before, "ntorque_tasks_enqueued_total", queue="mail") == 3
        assert value(before, "ntorque_enqueue_errors_total", reason="rejected") == 1
        assert value(before, "ntorque_tasks", queue="mail", status="pending") == 3
        assert value(before, "ntorque_tasks", queue="mail", status="in_progress") == 0
        assert value(before, "ntorque_tasks_due", queue="mail") == 2
        assert value(before, "ntorque_oldest_due_age_seconds", queue="mail") == pytest.approx(5)
        assert ("ntorque_attempts_total", frozenset()) not in before

        assert len(await node.consume()) == 3
        after = await scrape(node, admin)
        attempts = {
            (dict(labels)["queue"], dict(labels)["outcome"], dict(labels)["code"]): count
            for (name, labels), count in after.items()
            if name == "ntorque_attempts_total"
        }
        assert attempts == {
            ("default", "success", "2xx"): 1,
            ("mail", "retried", "5xx"): 1,
            ("mail", "failed", "4xx"): 1,
        }
        assert value(after, "ntorque_hook_call_duration_seconds_count", queue="default") == 1
        assert value(after, "ntorque_hook_call_duration_seconds_count", queue="mail") == 2
        assert value(after, "ntorque_hook_call_duration_seconds_sum", queue="default") > 0
        # Left: the retried task (due later) and the delayed one, none due.
        assert value(after, "ntorque_tasks", queue="mail", status="pending") == 2
        assert value(after, "ntorque_tasks_due", queue="mail") == 0
        assert value(after, "ntorque_oldest_due_age_seconds", queue="mail") == 0
        assert ("ntorque_tasks", frozenset({("queue", "default"), ("status", "pending")})) not in (
            after
        )
        assert value(after, "ntorque_consumer_slots_in_use") == 0
        assert value(after, "ntorque_tasks_enqueued_total", queue="mail") == 3


@pytest.fixture
def sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "sqlite", tmp_path)


async def test_the_token_or_an_admin_key_reads_the_metrics(sqlite: Backend) -> None:
    async with live_for(sqlite, metrics_token=TOKEN) as node:
        refused = await node.request("GET", "/metrics", key="")
        assert refused.status == 401
        assert refused.json["status"] == 401
        assert refused.headers["Www-Authenticate"].startswith("Bearer")
        wrong = await node.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}, key=""
        )
        assert wrong.status == 401
        right = await node.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, key=""
        )
        assert right.status == 200
        assert b"# HELP ntorque_tasks_enqueued_total" in right.body
    async with live_for(sqlite) as node:  # no token: the API's keys, an admin's only
        assert (await node.request("GET", "/metrics", key="")).status == 401
        _, plain = await node.create_app()
        assert (await node.request("GET", "/metrics", key=plain)).status == 403
        _, admin = await node.create_app(admin=True)
        assert (await node.request("GET", "/metrics", key=admin)).status == 200
    async with live_for(sqlite, authenticate=False) as node:  # an open API: open metrics
        assert (await node.request("GET", "/metrics", key="")).status == 200


async def test_two_nodes_in_one_process_count_apart(sqlite: Backend, hooks: HookServer) -> None:
    async with (
        live_for(sqlite, loops=False, authenticate=False) as first,
        live_for(sqlite, loops=False, authenticate=False) as second,
    ):
        await first.enqueue(hooks.url(f"/status/200/{uuid.uuid4().hex}"))
        one, other = await asyncio.gather(scrape(first, ""), scrape(second, ""))
        assert value(one, "ntorque_tasks_enqueued_total", queue="default") == 1
        assert value(other, "ntorque_tasks_enqueued_total", queue="default") == 0
        # The gauges are the database's: the same for both.
        assert value(other, "ntorque_tasks", queue="default", status="pending") == 1


async def test_scrapes_within_the_cache_window_read_the_database_once(sqlite: Backend) -> None:
    async with live_for(sqlite, loops=False, authenticate=False) as node:
        scrape = node.running.scrape

        async def twice() -> None:
            await scrape.text()
            await asyncio.gather(scrape.text(), scrape.text())

        statements = await all_statements(node.running.engine, twice)
        assert len(statements) == 1
        scrape.cache_s = 0
        assert len(await all_statements(node.running.engine, scrape.text)) == 1


async def test_a_failed_read_leaves_the_counters_and_omits_the_gauges() -> None:
    from ntorque.errors import StorageUnavailable

    async def down(_now: float) -> list[QueueFigures]:
        raise StorageUnavailable()

    counted = Metrics()
    counted.created("default")
    samples = parse(await Scrape(counted, down).text())
    assert value(samples, "ntorque_tasks_enqueued_total", queue="default") == 1
    assert not any(name == "ntorque_tasks" for name, _ in samples)


def test_queue_labels_are_bounded() -> None:
    label = metrics.QueueLabels(limit=2)
    assert [label(name) for name in ("a", "b", "c", "a", "d")] == [
        "a",
        "b",
        "_other",
        "a",
        "_other",
    ]


async def test_several_processes_are_summed_and_a_dead_ones_gauges_leave() -> None:
    """Two processes' metrics in one test process: the second writes its
    files under another pid, as a forked child would."""
    figures = [QueueFigures("default", Status.PENDING, 4, 1, None)]

    async def read(_now: float) -> list[QueueFigures]:
        return figures

    with metrics.multiprocess_dir() as path:
        this = Metrics()
        values.ValueClass = values.MultiProcessValue(lambda: 999_999_001)  # type: ignore[no-untyped-call]
        other = Metrics()
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        for each in (this, other):
            each.created("default")
            each.settled("default", Status.COMPLETED, 200, 0.02)
            each.slots_in_use.inc()
        scrape = Scrape(this, read, multiprocess_dir=path)
        summed = parse(await scrape.text())
        assert value(summed, "ntorque_tasks_enqueued_total", queue="default") == 2
        assert value(summed, "ntorque_hook_call_duration_seconds_count", queue="default") == 2
        assert value(summed, "ntorque_consumer_slots_in_use") == 2
        assert value(summed, "ntorque_tasks", queue="default", status="pending") == 4
        metrics.process_ended(999_999_001, path)
        left = parse(await scrape.text())
        assert value(left, "ntorque_consumer_slots_in_use") == 1
        assert value(left, "ntorque_tasks_enqueued_total", queue="default") == 2
    assert values.ValueClass is values.MutexValue
