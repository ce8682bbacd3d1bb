"""The clients against a node in the test's own event loop, on both backends.
Every case runs with both clients: AsyncClient awaited on the node's loop, and
the blocking Client in a thread, off the node's loop (`Awaited`).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from ntorque.client import ClientError
from tests.clients import Clients, client_for, every_task
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node
pytestmark = in_node_loop
ENDED = ("completed", "failed", "cancelled")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend) as running:
        yield running


@pytest.fixture(params=["async", "sync"])
def api(request: pytest.FixtureRequest, node: LiveNode) -> Clients:
    return client_for(request.param, node.base_url, node.key)


def path(kind: str, status: int = 200) -> str:
    return f"/status/{status}/client-{kind}-{uuid.uuid4().hex}"


async def test_a_task_enqueued_is_performed_and_its_attempts_read(
    api: Clients, node: LiveNode, hooks: HookServer
) -> None:
    hook = path("plain")
    task = await api.enqueue(hooks.url(hook), "user_id=1", headers={"X-Trace": "t1"}, timeout=9)
    assert (task["status"], task["timeout"], task.replayed) == ("pending", 9, False)
    assert (await api.task(task["id"]))["id"] == task["id"]
    (call,) = await hooks.wait_for_calls_async(hook, 1)
    assert call.body == b"user_id=1"
    assert call.headers["x-trace"] == "t1"
    assert (await node.wait_for(task["id"]))["status"] == "completed"
    (attempt,) = await api.attempts(task["id"])
    assert attempt["status_code"] == 200
    assert (await api.push(task["id"]))["id"] == task["id"]


async def test_the_servers_error_is_raised(api: Clients, node: LiveNode) -> None:
    with pytest.raises(ClientError) as raised:
        await api.enqueue("not a url")
    assert raised.value.status == 400
    assert "url" in raised.value.message
    with pytest.raises(ClientError) as raised:
        await client_for(api, node.base_url, "wrong-key").task(1)
    assert raised.value.status == 401


async def test_no_answer_raises_an_os_error(api: Clients) -> None:
    with pytest.raises(OSError):
        await client_for(api, "http://127.0.0.1:9", None).task(1)  # refused
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        base_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(OSError):
            await client_for(api, base_url, None, timeout_s=0.2).task(1)


async def test_schedule_and_policy_options_reach_the_task(api: Clients, hooks: HookServer) -> None:
    hook, callback = hooks.url(path("options")), hooks.url(path("callback"))
    eta = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    task = await api.enqueue(hook, eta=eta, retries=2, backoff="linear", callback=callback)
    assert datetime.fromisoformat(task["due"]) == eta
    assert (task["retries"], task["backoff"], task["callback_url"]) == (2, "linear", callback)


async def test_delay_and_eta_together_are_refused(api: Clients, hooks: HookServer) -> None:
    with pytest.raises(ClientError) as raised:
        await api.enqueue(hooks.url(path("both")), delay=600, eta=datetime.now(UTC))
    assert raised.value.status == 400


async def test_an_idempotent_enqueue_is_replayed_once_stored(
    api: Clients, hooks: HookServer
) -> None:
    key, hook = f"order-{uuid.uuid4().hex}", hooks.url(path("idempotent"))
    first = await api.enqueue(hook, b"one", idempotency_key=key, delay=600)
    again = await api.enqueue(hook, b"one", idempotency_key=key, delay=600)
    assert (first.replayed, again.replayed, again["id"]) == (False, True, first["id"])
    with pytest.raises(ClientError) as raised:
        await api.enqueue(hook, b"another body", idempotency_key=key)
    assert raised.value.status == 422


async def test_cancel_then_retry(api: Clients, node: LiveNode, hooks: HookServer) -> None:
    task = await api.enqueue(hooks.url(path("cancel")), delay=600)
    assert (await api.cancel(task["id"]))["status"] == "cancelled"
    with pytest.raises(ClientError) as raised:
        await api.cancel(task["id"])
    assert (raised.value.status, "cancelled" in raised.value.message) == (409, True)
    assert (await api.retry(task["id"]))["status"] == "pending"
    assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"
    with pytest.raises(ClientError) as raised:
        await api.retry(task["id"])
    assert raised.value.status == 409


async def test_listing_pages_and_filters(api: Clients, hooks: HookServer) -> None:
    prefix = hooks.url(path("list"))
    made = [await api.enqueue(f"{prefix}/{n}", delay=600) for n in range(5)]
    newest_first = [task["id"] for task in reversed(made)]
    page = await api.tasks(url_prefix=prefix, limit=2)
    assert [task["id"] for task in page["tasks"]] == newest_first[:2]
    rest = await api.tasks(url_prefix=prefix, limit=10, cursor=page["next_cursor"])
    assert ([task["id"] for task in rest["tasks"]], rest["next_cursor"]) == (newest_first[2:], None)
    found = await every_task(api, url_prefix=prefix, status="pending", page_size=2)
    assert [task["id"] for task in found] == newest_first
    assert await every_task(api, url_prefix=prefix, status="failed") == []
    after = datetime.fromisoformat(made[0]["created"]) - timedelta(seconds=1)
    assert len(await every_task(api, url_prefix=prefix, created_after=after)) == 5
    assert await every_task(api, url_prefix=prefix, created_before=after.timestamp()) == []


async def test_bulk_cancel_and_retry(api: Clients, node: LiveNode, hooks: HookServer) -> None:
    prefix = hooks.url(path("bulk"))
    made = [await api.enqueue(f"{prefix}/{n}", delay=600) for n in range(3)]
    assert await api.cancel_many(url_prefix=prefix) == {"matched": 3, "changed": 3}
    assert await api.cancel_many(url_prefix=prefix, status="pending") == {
        "matched": 0,
        "changed": 0,
    }
    assert await api.retry_many(url_prefix=prefix, status="cancelled") == {
        "matched": 3,
        "changed": 3,
    }
    for task in made:
        assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"


async def test_a_batch_is_enqueued_in_order(api: Clients, hooks: HookServer) -> None:
    binary, text = path("batch-bytes"), path("batch-text")
    tasks = await api.enqueue_batch(
        [
            {"url": hooks.url(binary), "body": b"\x00\xff", "content_type": "image/png"},
            {"url": hooks.url(text), "body": "caf\u00e9", "headers": {"X-Trace": "b"}},
        ]
    )
    assert [task["url"] for task in tasks] == [hooks.url(binary), hooks.url(text)]
    (call,) = await hooks.wait_for_calls_async(binary, 1)
    assert call.body == b"\x00\xff"
    (call,) = await hooks.wait_for_calls_async(text, 1)
    assert (call.body, call.headers["x-trace"]) == ("caf\u00e9".encode(), "b")


async def test_a_batch_with_a_bad_item_stores_nothing(api: Clients, hooks: HookServer) -> None:
    prefix = hooks.url(path("bad-batch"))
    with pytest.raises(ClientError) as raised:
        await api.enqueue_batch([{"url": f"{prefix}/ok"}, {"url": "ftp://nowhere"}])
    assert raised.value.status == 400
    assert [(error["index"], error["field"]) for error in raised.value.errors] == [(1, "url")]
    assert await every_task(api, url_prefix=prefix) == []


# -- named queues ------------------------------------------------------------------


def queue_name(kind: str) -> str:
    return f"client-{kind}-{uuid.uuid4().hex[:12]}"


async def test_a_queue_is_set_changed_paused_resumed_and_deleted(api: Clients) -> None:
    name = queue_name("settings")
    made = await api.set_queue(name, max_concurrency=2, rate_per_s=5, retries=3)
    assert (made["name"], made["max_concurrency"], made["rate_per_s"]) == (name, 2, 5.0)
    assert (made["burst"], made["retries"], made["paused"]) == (5, 3, False)  # burst: 1 s worth
    changed = await api.update_queue(name, rate_per_s=None, max_concurrency=4)
    assert changed["max_concurrency"] == 4 and changed["retries"] == 3  # the rest kept
    assert (changed["rate_per_s"], changed["burst"]) == (None, None)  # no rate, no burst
    assert (await api.pause_queue(name))["paused"] is True
    assert (await api.queue(name))["paused"] is True
    assert (await api.resume_queue(name))["paused"] is False
    replaced = await api.set_queue(name, timeout=30)  # PUT: what is left out is reset
    reset = ("max_concurrency", "retries", "timeout")
    assert [replaced[field] for field in reset] == [None, None, 30]
    assert name in [listed["name"] for listed in await api.queues()]
    assert await api.delete_queue(name) is None
    with pytest.raises(ClientError) as raised:
        await api.queue(name)
    assert raised.value.status == 404


async def test_a_bad_queue_setting_raises_naming_the_field(api: Clients) -> None:
    with pytest.raises(ClientError) as raised:
        await api.set_queue(queue_name("bad"), max_concurrency=0)
    assert (raised.value.status, raised.value.field) == (400, "max_concurrency")
    with pytest.raises(ClientError) as raised:
        await api.queue("no/such name")
    assert raised.value.status == 400


async def test_tasks_name_their_queue_and_are_listed_by_it(
    api: Clients, node: LiveNode, hooks: HookServer
) -> None:
    name, hook = queue_name("tasks"), hooks.url(path("queued"))
    await api.set_queue(name, retries=2, paused=True)
    one = await api.enqueue(hook, queue=name)
    batch = await api.enqueue_batch([{"url": hook, "queue": name}, {"url": hook}])
    assert [one["queue"], *(task["queue"] for task in batch)] == [name, name, "default"]
    assert one["retries"] == 2  # the queue's default, applied at enqueue
    listed = await every_task(api, queue=name)
    assert sorted(task["id"] for task in listed) == sorted([one["id"], batch[0]["id"]])
    with pytest.raises(ClientError) as raised:
        await api.delete_queue(name)  # its tasks wait: paused
    assert raised.value.status == 409
    assert (await api.queue(name))["figures"]["pending"] == 2
    await api.resume_queue(name)
    for task in (one, batch[0]):
        assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"
    await api.delete_queue(name)


# -- schedules ---------------------------------------------------------------------


async def test_a_schedule_is_made_listed_changed_paused_resumed_and_deleted(
    api: Clients, hooks: HookServer
) -> None:
    hook = hooks.url(path("schedule"))
    made = await api.create_schedule(
        name="weekday report", cron="0 9 * * 1-5", timezone="Europe/Paris",
        task={"url": hook, "body": b"\x00\xff", "headers": {"X-Trace": "t1"}, "retries": 2},
    )  # fmt: skip
    assert made["description"] == "At 09:00 on Monday through Friday (Europe/Paris)"
    assert (len(made["next_ticks"]), made["last_tasks"], made["paused"]) == (5, [], False)
    task = made["task"]
    assert (task["url"], task["body_size"], task["headers"], task["retries"]) == (
        hook, 2, {"X-Trace": "t1"}, 2,
    )  # fmt: skip
    assert (await api.schedule(made["id"]))["id"] == made["id"]
    later = await api.create_schedule(every_s=3600, task={"url": hook})
    first = await api.schedules(limit=1)
    assert [s["id"] for s in first["schedules"]] == [later["id"]]  # newest first
    second = await api.schedules(limit=1, cursor=first["next_cursor"])
    assert [s["id"] for s in second["schedules"]] == [made["id"]]
    changed = await api.update_schedule(made["id"], name=None, catch_up="all")
    assert (changed["name"], changed["catch_up"], changed["cron"]) == (None, "all", "0 9 * * 1-5")
    changed = await api.update_schedule(made["id"], every_s=60, task={"url": hook, "method": "PUT"})
    assert (changed["cron"], changed["every_s"], changed["task"]["method"]) == (None, 60, "PUT")
    assert (await api.pause_schedule(made["id"]))["paused"] is True
    assert (await api.resume_schedule(made["id"]))["paused"] is False
    for schedule_id in (made["id"], later["id"]):
        assert await api.delete_schedule(schedule_id) is None
        with pytest.raises(ClientError) as raised:
            await api.schedule(schedule_id)
        assert raised.value.status == 404


async def test_a_bad_schedule_raises_naming_the_field(api: Clients, hooks: HookServer) -> None:
    task: Any = {"url": hooks.url(path("bad-schedule"))}
    for fields, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"every_s": 0.5}, "every_s"),
        ({"every_s": 60, "task": {"url": "ftp://nowhere"}}, "task.url"),
    ):
        with pytest.raises(ClientError) as raised:
            await api.create_schedule(**{"task": task, **fields})
        assert (raised.value.status, raised.value.field) == (400, field)
    with pytest.raises(ClientError) as raised:
        await api.pause_schedule(999_999_999)
    assert raised.value.status == 404


async def test_each_tick_enqueues_a_task_listed_by_its_schedule(
    api: Clients, node: LiveNode, hooks: HookServer
) -> None:
    hook = path("ticks")
    made = await api.create_schedule(every_s=1, catch_up="none", task={"url": hooks.url(hook)})
    call, *_ = await hooks.wait_for_calls_async(hook, 1)
    assert call.headers["ntorque-schedule-id"] == str(made["id"])
    await api.pause_schedule(made["id"])  # no tick from here on
    listed = await every_task(api, schedule_id=made["id"])
    assert listed and {task["schedule_id"] for task in listed} == {made["id"]}
    assert call.headers["ntorque-schedule-tick"] in {task["schedule_tick"] for task in listed}
    for task in listed:
        assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"
    shown = await api.schedule(made["id"])
    assert [task["id"] for task in shown["last_tasks"]] == [task["id"] for task in listed]
    await api.delete_schedule(made["id"])


# -- the short names, wait() and the body's forms -----------------------------------


async def test_batch_get_wait_and_list_by_their_short_names(
    api: Clients, hooks: HookServer
) -> None:
    prefix = hooks.url(path("names"))
    made = await api.batch([{"url": f"{prefix}/{n}"} for n in range(3)])
    done = [await api.wait(task["id"], timeout_s=15, poll_s=0.05) for task in made]
    assert [task["status"] for task in done] == ["completed"] * 3
    assert (await api.get(made[0]["id"])) == done[0]
    first = await api.list(url_prefix=prefix, limit=2)
    rest = await api.list(url_prefix=prefix, limit=2, cursor=first["next_cursor"])
    listed = [task["id"] for task in first["tasks"] + rest["tasks"]]
    assert (listed, rest["next_cursor"]) == ([task["id"] for task in reversed(made)], None)


async def test_wait_gives_up_after_its_timeout(api: Clients, hooks: HookServer) -> None:
    task = await api.enqueue(hooks.url(path("later")), delay=600)
    with pytest.raises(TimeoutError, match="still pending"):
        await api.wait(task["id"], timeout_s=0.2, poll_s=0.05)
    assert (await api.cancel(task["id"]))["status"] == "cancelled"
    assert (await api.wait(task["id"], timeout_s=0.2))["status"] == "cancelled"


async def test_a_json_or_charset_body_reaches_the_hook_with_its_type(
    api: Clients, hooks: HookServer
) -> None:
    data, hook = {"user": 7, "name": "caf\u00e9"}, path("json")
    task = await api.enqueue(hooks.url(hook), json=data)
    assert (task["content_type"], task["charset"]) == ("application/json", "utf-8")
    (call,) = await hooks.wait_for_calls_async(hook, 1)
    assert (json.loads(call.body), call.headers["content-type"]) == (
        data, "application/json; charset=utf-8",
    )  # fmt: skip
    hook = path("latin")
    task = await api.enqueue(
        hooks.url(hook), "caf\u00e9", content_type="text/plain", charset="latin-1"
    )
    assert task["charset"] == "latin-1"
    (call,) = await hooks.wait_for_calls_async(hook, 1)
    assert (call.body, call.headers["content-type"]) == (
        "caf\u00e9".encode("latin-1"), "text/plain; charset=latin-1",
    )  # fmt: skip
