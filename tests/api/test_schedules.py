"""Recurring schedules through the API, in one process on both backends:
create, read, list, change, pause, resume, delete; the tasks the ticks make
(their headers and JSON), catch-up after a gap, and daylight-saving nights
driven by the node's clock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Backend, give_back, live_for, make_backend
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

PARIS = ZoneInfo("Europe/Paris")


def hook(hooks: HookServer) -> tuple[str, str]:
    path = f"/schedules/{uuid.uuid4().hex}"
    return path, hooks.url(path)


async def create(node: LiveNode, **body: Any) -> dict[str, Any]:
    answer = await node.request("POST", "/schedules", json.dumps(body).encode())
    assert answer.status == 201, answer.body
    assert answer.headers["Location"].endswith(f"/schedules/{answer.json['id']}")
    return dict(answer.json)


async def fire(node: LiveNode) -> None:
    """One round of the node's ticker (its loops are not running)."""
    await node.running.ticker.round()


async def made(node: LiveNode, schedule_id: int) -> list[dict[str, Any]]:
    answer = await node.request("GET", f"/tasks?schedule_id={schedule_id}")
    assert answer.status == 200, answer.body
    return list(reversed(answer.json["tasks"]))  # oldest first


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_schedule_every_second_calls_its_hook_with_the_tick(
    backend: Backend, hooks: HookServer
) -> None:
    path, url = hook(hooks)
    async with live_for(backend) as node:
        schedule = await create(
            node,
            every_s=1,
            name="heartbeat",
            task={"url": url, "body": "ping", "headers": {"X-Kind": "beat"}},
        )
        assert (schedule["every_s"], schedule["cron"], schedule["catch_up"]) == (
            1.0,
            None,
            "latest",
        )
        assert schedule["description"] == "Every second"
        calls = await hooks.wait_for_calls_async(path, 3, timeout_s=10)
    ticks = [call.headers["ntorque-schedule-tick"] for call in calls]
    assert len(set(ticks)) == len(ticks)  # one call per tick
    assert {call.headers["ntorque-schedule-id"] for call in calls} == {str(schedule["id"])}
    assert {(call.body, call.headers["x-kind"]) for call in calls} == {(b"ping", "beat")}
    for call in calls:  # within a second of its tick
        assert 0 <= call.at - at(call.headers["ntorque-schedule-tick"]) < 1.0


async def test_create_read_list_change_and_delete(backend: Backend, hooks: HookServer) -> None:
    _, url = hook(hooks)
    clock = Clock(at("2026-12-07T08:00:00+01:00"))  # a Monday
    async with live_for(backend, loops=False, clock=clock) as node:
        schedule = await create(
            node,
            cron="0 9 * * 1-5",
            timezone="Europe/Paris",
            task={"url": url, "queue": "reports", "retries": 2, "timeout": 30},
        )
        assert schedule["description"] == "At 09:00 on Monday through Friday (Europe/Paris)"
        assert schedule["next_ticks"] == [
            "2026-12-07T08:00:00+00:00", "2026-12-08T08:00:00+00:00",
            "2026-12-09T08:00:00+00:00", "2026-12-10T08:00:00+00:00",
            "2026-12-11T08:00:00+00:00",
        ]  # fmt: skip
        assert schedule["next_tick"] == "2026-12-07T08:00:00+00:00"
        assert schedule["task"] == {
            "url": url, "method": "POST", "queue": "reports", "timeout": 30, "retries": 2,
            "backoff": None, "callback": None, "content_type": "application/x-www-form-urlencoded",
            "charset": "utf-8", "headers": {}, "body_size": 0,
        }  # fmt: skip
        got = await node.request("GET", f"/schedules/{schedule['id']}")
        assert got.json == {**schedule, "last_tasks": []}
        listed = await node.request("GET", "/schedules")
        assert [s["id"] for s in listed.json["schedules"]] == [schedule["id"]]
        assert listed.json["next_cursor"] is None
        assert "next_ticks" not in listed.json["schedules"][0]

        patched = await node.request(
            "PATCH", f"/schedules/{schedule['id']}", b'{"timezone": "America/New_York"}'
        )
        assert patched.status == 200, patched.body
        assert patched.json["cron"] == "0 9 * * 1-5"
        assert patched.json["next_tick"] == "2026-12-07T14:00:00+00:00"
        assert patched.json["task"] == schedule["task"]

        every = await node.request(
            "PATCH", f"/schedules/{schedule['id']}", b'{"every_s": 3600, "catch_up": "all"}'
        )
        assert (every.json["cron"], every.json["timezone"], every.json["every_s"]) == (
            None, None, 3600.0,
        )  # fmt: skip
        assert every.json["description"] == "Every hour"
        assert at(every.json["next_tick"]) == clock.now + 3600

        gone = await node.request("DELETE", f"/schedules/{schedule['id']}")
        assert gone.status == 204
        again = await node.request("GET", f"/schedules/{schedule['id']}")
        assert again.status == 404
        assert (await node.request("DELETE", f"/schedules/{schedule['id']}")).status == 404


async def test_a_tick_makes_one_task_that_knows_its_tick(
    backend: Backend, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    clock = Clock(at("2026-12-07T08:59:59+01:00"))
    async with live_for(backend, loops=False, clock=clock) as node:
        schedule = await create(
            node, cron="0 9 * * *", timezone="Europe/Paris", task={"url": url, "queue": "daily"}
        )
        await fire(node)
        assert await made(node, schedule["id"]) == []  # not yet
        clock.advance(1.2)
        await fire(node)
        await fire(node)  # a second look finds nothing more to do
        (task,) = await made(node, schedule["id"])
        assert (task["schedule_id"], task["schedule_tick"]) == (
            schedule["id"], "2026-12-07T08:00:00+00:00",
        )  # fmt: skip
        assert (task["url"], task["queue"], task["status"]) == (url, "daily", "pending")
        detail = await node.request("GET", f"/schedules/{schedule['id']}")
        assert detail.json["last_tick"] == "2026-12-07T08:00:00+00:00"
        assert detail.json["next_tick"] == "2026-12-08T08:00:00+00:00"
        assert [t["id"] for t in detail.json["last_tasks"]] == [task["id"]]
        assert detail.json["last_tasks"][0]["tick"] == "2026-12-07T08:00:00+00:00"
        (leased,) = await node.consume()
        assert leased.schedule_id == schedule["id"]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("latest", ["2026-12-07T10:00:00+00:00"]),
        ("all", [f"2026-12-07T{hour:02}:00:00+00:00" for hour in range(5, 11)]),
        ("none", []),
    ],
)
async def test_missed_ticks_after_a_gap(
    backend: Backend, hooks: HookServer, catch_up: str, expected: list[str]
) -> None:
    """Every node down from 04:30 to 10:20: the hourly ticks of 05:00 to
    10:00 were missed."""
    _, url = hook(hooks)
    clock = Clock(at("2026-12-07T04:30:00+00:00"))
    async with live_for(backend, loops=False, clock=clock) as node:
        schedule = await create(node, cron="0 * * * *", catch_up=catch_up, task={"url": url})
        clock.advance(5 * 3600 + 50 * 60)
        await fire(node)
        assert [task["schedule_tick"] for task in await made(node, schedule["id"])] == expected
        detail = await node.request("GET", f"/schedules/{schedule['id']}")
        assert detail.json["next_tick"] == "2026-12-07T11:00:00+00:00"


async def test_none_still_makes_a_tick_that_is_only_a_little_late(
    backend: Backend, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    clock = Clock(at("2026-12-07T04:59:00+00:00"))
    async with live_for(backend, loops=False, clock=clock) as node:
        schedule = await create(node, cron="0 * * * *", catch_up="none", task={"url": url})
        clock.advance(60 + 30)  # 30 s late: a restart, not a gap
        await fire(node)
        ticks = [task["schedule_tick"] for task in await made(node, schedule["id"])]
        assert ticks == ["2026-12-07T05:00:00+00:00"]


async def test_a_paused_schedule_makes_nothing_and_its_resume_catches_up(
    backend: Backend, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    clock = Clock(at("2026-12-07T04:30:00+00:00"))
    async with live_for(backend, loops=False, clock=clock) as node:
        schedule = await create(node, cron="*/15 * * * *", task={"url": url})
        paused = await node.request("POST", f"/schedules/{schedule['id']}/pause")
        assert (paused.status, paused.json["paused"]) == (200, True)
        clock.advance(3600)
        await fire(node)
        assert await made(node, schedule["id"]) == []
        resumed = await node.request("POST", f"/schedules/{schedule['id']}/resume")
        assert resumed.json["paused"] is False
        await fire(node)
        ticks = [task["schedule_tick"] for task in await made(node, schedule["id"])]
        assert ticks == ["2026-12-07T05:30:00+00:00"]  # the latest missed, once


async def test_daylight_saving_nights_skip_no_tick_and_run_none_twice(
    backend: Backend, hooks: HookServer
) -> None:
    """Paris, 2026: clocks go forward at 02:00 on 29 March (02:30 never
    happens) and back at 03:00 on 25 October (02:30 happens twice). A job at
    02:30 runs once each night; a job every 30 minutes runs at every real
    half hour. The clock moves a minute at a time through both nights, to 03:10."""
    _, url = hook(hooks)
    expected = {
        "30 2 * * *": {
            "spring": ["2026-03-29T03:00:00+02:00"],
            "autumn": ["2026-10-25T02:30:00+02:00"],
        },
        "*/30 * * * *": {
            "spring": ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00"],
            "autumn": [
                "2026-10-25T01:30:00+02:00", "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00",
            ],
        },
    }  # fmt: skip
    nights = {
        "spring": ("2026-03-29T01:10:00+01:00", "2026-03-29T03:10:00+02:00"),
        "autumn": ("2026-10-25T01:10:00+02:00", "2026-10-25T03:10:00+01:00"),
    }
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        for night, (start, end) in nights.items():
            clock.now = at(start)
            ids = {}
            for cron in expected:
                made_ = await create(node, cron=cron, timezone="Europe/Paris", task={"url": url})
                ids[cron] = made_["id"]
            while clock.now < at(end):
                clock.advance(60)
                await fire(node)
            for cron, schedule_id in ids.items():
                await node.request("POST", f"/schedules/{schedule_id}/pause")
                ticks = [
                    datetime.fromisoformat(task["schedule_tick"]).astimezone(PARIS).isoformat()
                    for task in await made(node, schedule_id)
                ]
                assert ticks == expected[cron][night], (cron, night)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": {"url": "http://127.0.0.1:9/"}}, "cron"),
        ({"cron": "0 9 * * *", "every_s": 60, "task": {"url": "http://127.0.0.1:9/"}}, "every_s"),
        ({"cron": "61 * * * *", "task": {"url": "http://127.0.0.1:9/"}}, "cron"),
        ({"cron": "0 9 * *", "task": {"url": "http://127.0.0.1:9/"}}, "cron"),
        ({"cron": "0 0 30 2 *", "task": {"url": "http://127.0.0.1:9/"}}, "cron"),
        ({"cron": "* * */20 * 1L", "task": {"url": "http://127.0.0.1:9/"}}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus", "task": {"url": "x"}}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "../../etc/passwd", "task": {}}, "timezone"),
        ({"every_s": 0.5, "task": {"url": "http://127.0.0.1:9/"}}, "every_s"),
        ({"every_s": "60", "task": {"url": "http://127.0.0.1:9/"}}, "every_s"),
        ({"every_s": 60, "timezone": "UTC", "task": {"url": "http://127.0.0.1:9/"}}, "timezone"),
        ({"every_s": 60}, "task"),
        ({"every_s": 60, "task": []}, "task"),
        ({"every_s": 60, "task": {"url": "ftp://example.com/"}}, "task.url"),
        ({"every_s": 60, "task": {"url": "http://127.0.0.1:9/", "delay": 5}}, "task.delay"),
        ({"every_s": 60, "task": {"url": "http://127.0.0.1:9/", "retries": -1}}, "task.retries"),
        ({"every_s": 60, "catch_up": "some", "task": {"url": "http://127.0.0.1:9/"}}, "catch_up"),
        ({"every_s": 60, "paused": "yes", "task": {"url": "http://127.0.0.1:9/"}}, "paused"),
        ({"every_s": 60, "name": "x" * 101, "task": {"url": "http://127.0.0.1:9/"}}, "name"),
        ({"every_s": 60, "colour": "red", "task": {"url": "http://127.0.0.1:9/"}}, "colour"),
        # An unknown field with no name: the template is at fault ("task.", once).
        ({"every_s": 60, "task": {"url": "http://127.0.0.1:9/", "": 1}}, "task"),
    ],
)
async def test_bad_schedules_are_400s_that_name_the_field(
    backend: Backend, body: dict[str, Any], field: str
) -> None:
    async with live_for(backend, loops=False) as node:
        answer = await node.request("POST", "/schedules", json.dumps(body).encode())
        assert answer.status == 400, answer.body
        assert answer.json["field"] == field, answer.json
        listed = await node.request("GET", "/schedules")
        assert listed.json["schedules"] == []  # nothing half-made


async def test_patching_a_task_replaces_the_template_and_keeps_the_next_tick(
    backend: Backend, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    _, other = hook(hooks)
    async with live_for(backend, loops=False) as node:
        schedule = await create(node, cron="0 9 * * *", task={"url": url, "body": "a"})
        answer = await node.request(
            "PATCH", f"/schedules/{schedule['id']}", json.dumps({"task": {"url": other}}).encode()
        )
        assert answer.status == 200, answer.body
        assert (answer.json["task"]["url"], answer.json["task"]["body_size"]) == (other, 0)
        assert answer.json["next_tick"] == schedule["next_tick"]
        bad = await node.request("PATCH", f"/schedules/{schedule['id']}", b'{"cron": "x"}')
        assert (bad.status, bad.json["field"]) == (400, "cron")
        missing = await node.request("PATCH", "/schedules/999999", b'{"name": "x"}')
        assert missing.status == 404
        assert (await node.request("POST", "/schedules/999999/pause")).status == 404


async def test_a_made_schedule_is_answered_as_a_get_reads_it(
    backend: Backend, hooks: HookServer
) -> None:
    """Byte for byte: SQLite handed a whole every_s back from the INSERT as
    an integer, so the 201 said "every_s": 2 and every read after it 2.0."""
    _, url = hook(hooks)
    async with live_for(backend, loops=False, clock=Clock()) as node:
        for rule in ({"every_s": 2}, {"every_s": 2.5}, {"cron": "0 9 * * *"}):
            body = json.dumps({**rule, "task": {"url": url}}).encode()
            made = await node.request("POST", "/schedules", body)
            assert made.status == 201, made.body
            read = await node.request("GET", f"/schedules/{made.json['id']}")
            assert made.body == read.body, rule


async def test_the_listing_pages_newest_first(backend: Backend, hooks: HookServer) -> None:
    _, url = hook(hooks)
    async with live_for(backend, loops=False) as node:
        ids = [(await create(node, every_s=60, task={"url": url}))["id"] for _ in range(3)]
        first = await node.request("GET", "/schedules?limit=2")
        assert [s["id"] for s in first.json["schedules"]] == ids[::-1][:2]
        cursor = first.json["next_cursor"]
        rest = await node.request("GET", f"/schedules?limit=2&cursor={cursor}")
        assert [s["id"] for s in rest.json["schedules"]] == ids[:1]
        assert rest.json["next_cursor"] is None
        bad = await node.request("GET", "/schedules?status=x")
        assert (bad.status, bad.json["field"]) == (400, "status")


@pytest.fixture
def postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """PostgreSQL and Redis: two nodes share a channel only through Redis."""
    made = make_backend(request, "postgres", tmp_path)
    yield made
    give_back(request, made)


async def test_a_schedule_made_on_a_node_with_no_ticker_ticks_on_time(
    postgres: Backend, hooks: HookServer
) -> None:
    """A web-only node (no ticker of its own) tells a worker through the
    channel: the first ticks are on time, not one look (5 s) late."""
    path, url = hook(hooks)
    async with live_for(postgres) as worker:
        async with live_for(postgres, loops=False) as web:
            web.key = worker.key
            made = await create(web, every_s=1, task={"url": url})
            calls = await hooks.wait_for_calls_async(path, 2, timeout_s=10)
            await web.request("POST", f"/schedules/{made['id']}/pause")
    first = at(calls[0].headers["ntorque-schedule-tick"])
    assert first == at(made["next_tick"])  # the first tick was made, none skipped
    assert calls[0].at - first < 1.0


async def test_a_name_is_unique_so_a_retried_create_makes_no_second_schedule(
    backend: Backend, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    async with live_for(backend, loops=False) as node:
        body = {"name": "nightly report", "cron": "0 3 * * *", "task": {"url": url}}
        made = await create(node, **body)
        again = await node.request("POST", "/schedules", json.dumps(body).encode())
        assert again.status == 409, again.body
        assert "nightly report" in again.json["error"]
        found = await node.request("GET", "/schedules?name=nightly%20report")
        assert [s["id"] for s in found.json["schedules"]] == [made["id"]]
        other = await create(node, name="other", every_s=60, task={"url": url})
        rename = await node.request(
            "PATCH", f"/schedules/{other['id']}", b'{"name": "nightly report"}'
        )
        assert rename.status == 409
        unnamed = [await create(node, every_s=60, task={"url": url}) for _ in range(2)]
        assert [s["name"] for s in unnamed] == [None, None]  # no name: no handle, no clash
        listed = await node.request("GET", "/schedules")
        assert len(listed.json["schedules"]) == 4
