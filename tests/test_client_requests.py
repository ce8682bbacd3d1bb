"""The clients' requests as built, and answers as read, without a server
(the clients themselves are driven against a live node in test_client.py)."""

from __future__ import annotations

import base64
import inspect
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from ntorque import client_requests as build
from ntorque import client_schedules as schedules
from ntorque.client import AsyncClient, Client
from ntorque.client_requests import Answer, ClientError, Request, result

MORNING = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def query(request: Request[Any]) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.path).query))


def answer(status: int, data: object, **headers: str) -> Answer:
    return Answer(status, headers, json.dumps(data).encode())


def test_enqueue_sends_each_option_where_the_api_takes_it() -> None:
    request = build.enqueue(
        "https://example.com/hook",
        "a=1",
        {
            "method": "PUT",
            "timeout": 30,
            "content_type": "text/plain",
            "headers": {"X-Trace": "t1"},
            "delay": 2.5,
            "retries": 3,
            "backoff": "linear",
            "callback": "https://example.com/done",
            "idempotency_key": "order-42",
            "queue": "mail",
        },
    )
    assert (request.method, urlsplit(request.path).path, request.body) == ("POST", "/", b"a=1")
    assert query(request) == {
        "url": "https://example.com/hook",
        "method": "PUT",
        "timeout": "30",
        "delay": "2.5",
        "retries": "3",
        "backoff": "linear",
        "callback": "https://example.com/done",
        "queue": "mail",
    }
    assert request.headers == {
        "NTORQUE-PASSTHROUGH-X-Trace": "t1",
        "Content-Type": "text/plain",
        "Idempotency-Key": "order-42",
    }


def test_enqueue_leaves_out_what_is_not_given() -> None:
    request = build.enqueue("https://example.com/hook", b"\x00", {"timeout": None})  # type: ignore[typeddict-item]
    assert query(request) == {"url": "https://example.com/hook"}
    assert (request.headers, request.body) == ({}, b"\x00")


@pytest.mark.parametrize(
    ("eta", "sent"),
    [
        (MORNING, "2026-12-01T09:00:00+00:00"),
        (MORNING.astimezone(timezone(timedelta(hours=2))), "2026-12-01T11:00:00+02:00"),
        (1_700_000_000, "1700000000"),
        (1_700_000_000.25, "1700000000.25"),
    ],
)
def test_an_eta_is_iso_8601_with_its_offset_or_epoch_seconds(eta: Any, sent: str) -> None:
    assert query(build.enqueue("https://example.com/", b"", {"eta": eta}))["eta"] == sent


def test_a_time_without_a_zone_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build.enqueue("https://example.com/", b"", {"eta": datetime(2026, 12, 1, 9)})


def test_the_answer_to_an_enqueue_says_whether_it_was_replayed() -> None:
    request = build.enqueue("https://example.com/", b"", {"idempotency_key": "k"})
    first = result(request, answer(201, {"id": 7}))
    again = result(request, answer(200, {"id": 7}, **{"idempotent-replayed": "true"}))
    assert (first, first.replayed) == ({"id": 7}, False)
    assert (again, again.replayed) == ({"id": 7}, True)


def test_task_routes() -> None:
    assert (build.task(5).method, build.task(5).path) == ("GET", "/tasks/5")
    assert build.attempts(5).path == "/tasks/5/attempts"
    for verb in ("push", "cancel", "retry"):
        request = build.action(5, verb)
        assert (request.method, request.path, request.body) == ("POST", f"/tasks/5/{verb}", b"")
    attempts = answer(200, {"task_id": 5, "attempts": [{"number": 1}]})
    assert result(build.attempts(5), attempts) == [{"number": 1}]


def test_a_listing_puts_its_filters_in_the_query() -> None:
    assert build.tasks({}, None, None).path == "/tasks"
    request = build.tasks(
        {"status": "failed", "queue": "mail", "url_prefix": "https://x/", "created_after": MORNING},
        50,
        "c1",
    )
    assert query(request) == {
        "status": "failed",
        "queue": "mail",
        "url_prefix": "https://x/",
        "created_after": "2026-12-01T09:00:00+00:00",
        "limit": "50",
        "cursor": "c1",
    }
    assert query(build.tasks({"schedule_id": 7}, None, None)) == {"schedule_id": "7"}


def test_bulk_actions_send_the_filters_as_json() -> None:
    request = build.bulk("cancel", {"status": "pending", "created_before": 1_700_000_000.5})
    assert (request.method, request.path) == ("POST", "/tasks/cancel")
    assert request.headers == {"Content-Type": "application/json"}
    assert json.loads(request.body or b"") == {
        "status": "pending",
        "created_before": 1_700_000_000.5,
    }
    counted = result(request, answer(200, {"matched": 3, "changed": 2}))
    assert counted == {"matched": 3, "changed": 2}


def test_a_batch_sends_bytes_as_base64_and_times_as_text() -> None:
    request = build.enqueue_batch(
        [
            {"url": "https://x/1", "body": b"\x00\xff", "headers": {"X-A": "1"}},
            {"url": "https://x/2", "body": "text", "eta": MORNING, "retries": None},  # type: ignore[typeddict-item]
        ]
    )
    assert (request.method, request.path) == ("POST", "/tasks")
    assert json.loads(request.body or b"") == [
        {"url": "https://x/1", "body_base64": base64.b64encode(b"\x00\xff").decode(),
         "headers": {"X-A": "1"}},
        {"url": "https://x/2", "body": "text", "eta": "2026-12-01T09:00:00+00:00"},
    ]  # fmt: skip
    assert result(request, answer(201, {"tasks": [{"id": 1}, {"id": 2}]})) == [
        {"id": 1},
        {"id": 2},
    ]


def test_queue_routes() -> None:
    assert (build.queues().method, build.queues().path) == ("GET", "/queues")
    listed = answer(200, {"queues": [{"name": "mail"}], "next_cursor": None})
    assert result(build.queues(), listed) == [{"name": "mail"}]
    assert (build.queue("mail").method, build.queue("mail").path) == ("GET", "/queues/mail")
    for verb in ("pause", "resume"):
        request = build.queue_action("mail", verb)
        assert (request.method, request.path, request.body) == ("POST", f"/queues/mail/{verb}", b"")
    deleted = build.delete_queue("mail")
    assert (deleted.method, deleted.path, deleted.body) == ("DELETE", "/queues/mail", None)
    assert result(deleted, Answer(204, {}, b"")) is None


def test_queue_settings_are_json_and_none_is_sent_as_null() -> None:
    """PATCH {"rate_per_s": null} removes the rate limit: None must reach the server."""
    request = build.configure_queue("mail", "PATCH", {"max_concurrency": 5, "rate_per_s": None})
    assert (request.method, request.path) == ("PATCH", "/queues/mail")
    assert request.headers == {"Content-Type": "application/json"}
    assert json.loads(request.body or b"") == {"max_concurrency": 5, "rate_per_s": None}
    assert build.configure_queue("mail", "PUT", {}).body == b"{}"


def test_a_queue_name_is_sent_whole() -> None:
    """A bad name reaches the server in one piece, which refuses it saying why."""
    assert build.queue("a/b c").path == "/queues/a%2Fb%20c"


def test_a_batch_item_names_its_queue() -> None:
    request = build.enqueue_batch([{"url": "https://x/1", "queue": "mail"}])
    assert json.loads(request.body or b"") == [{"url": "https://x/1", "queue": "mail"}]


def test_schedule_routes() -> None:
    assert (schedules.schedules(None, None).method, schedules.schedules(None, None).path) == (
        "GET", "/schedules",
    )  # fmt: skip
    assert query(schedules.schedules(50, "c1")) == {"limit": "50", "cursor": "c1"}
    listed = answer(200, {"schedules": [{"id": 7}], "next_cursor": None})
    assert result(schedules.schedules(None, None), listed) == {
        "schedules": [{"id": 7}], "next_cursor": None,
    }  # fmt: skip
    assert (schedules.schedule(7).method, schedules.schedule(7).path) == ("GET", "/schedules/7")
    for verb in ("pause", "resume"):
        request = schedules.schedule_action(7, verb)
        assert (request.method, request.path, request.body) == ("POST", f"/schedules/7/{verb}", b"")
    deleted = schedules.delete_schedule(7)
    assert (deleted.method, deleted.path, deleted.body) == ("DELETE", "/schedules/7", None)
    assert result(deleted, Answer(204, {}, b"")) is None


def test_a_schedule_is_json_and_its_task_a_batch_item() -> None:
    request = schedules.create_schedule(
        {
            "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "catch_up": "all",
            "task": {"url": "https://x/1", "body": b"\x00\xff", "headers": {"X-Trace": "t1"}},
        }
    )  # fmt: skip
    assert (request.method, request.path) == ("POST", "/schedules")
    assert request.headers == {"Content-Type": "application/json"}
    assert json.loads(request.body or b"") == {
        "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "catch_up": "all",
        "task": {"url": "https://x/1", "body_base64": "AP8=", "headers": {"X-Trace": "t1"}},
    }  # fmt: skip
    changed = schedules.update_schedule(7, {"name": None, "every_s": 60})
    assert (changed.method, changed.path) == ("PATCH", "/schedules/7")
    assert json.loads(changed.body or b"") == {"name": None, "every_s": 60}  # null clears it


def test_an_error_answer_raises_with_the_servers_words() -> None:
    with pytest.raises(ClientError) as raised:
        result(build.task(5), answer(404, {"status": 404, "error": "no task 5"}))
    assert (raised.value.status, raised.value.message, str(raised.value)) == (
        404,
        "no task 5",
        "404: no task 5",
    )
    bad = {"status": 400, "error": "2 items are invalid", "errors": [{"index": 1, "field": "url"}]}
    with pytest.raises(ClientError) as raised:
        result(build.enqueue_batch([]), answer(400, bad))
    assert raised.value.errors == [{"index": 1, "field": "url"}]
    with pytest.raises(ClientError) as raised:
        result(build.task(5), answer(400, {"error": "bad delay", "field": "delay"}))
    assert raised.value.field == "delay"


def test_an_error_answer_that_is_not_json_is_quoted() -> None:
    with pytest.raises(ClientError) as raised:
        result(build.task(5), Answer(502, {}, b"<html>Bad gateway</html>"))
    assert (raised.value.status, raised.value.message) == (502, "<html>Bad gateway</html>")


def test_a_json_body_is_dumped_and_typed_and_a_charset_encodes_text() -> None:
    request = build.enqueue("https://x/", b"", {"json": {"name": "caf\u00e9"}})
    assert json.loads(request.body or b"") == {"name": "caf\u00e9"}
    assert request.headers == {"Content-Type": "application/json"}
    request = build.enqueue("https://x/", "caf\u00e9", {"charset": "latin-1"})
    assert request.body == "caf\u00e9".encode("latin-1")
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"}
    with pytest.raises(ValueError, match="not both"):
        build.enqueue("https://x/", b"a", {"json": [1]})


def test_a_deadline_paces_polls_then_times_out() -> None:
    deadline = build.Deadline(5, timeout_s=60, poll_s=0.5)
    assert deadline.pause({"status": "pending"}) == 0.5
    with pytest.raises(TimeoutError, match="task 5 still pending after 0 s"):
        build.Deadline(5, timeout_s=0, poll_s=0.5).pause({"status": "pending"})
    assert [build.finished({"status": s}) for s in ("pending", "in_progress", "failed")] == [
        False, False, True,
    ]  # fmt: skip


def test_both_clients_have_the_same_methods_and_arguments() -> None:
    def methods(kind: type) -> dict[str, list[inspect.Parameter]]:
        public = inspect.getmembers(kind, inspect.isfunction)
        found = {
            name: list(inspect.signature(method).parameters.values()) for name, method in public
        }
        return {name: params for name, params in found.items() if not name.startswith("_")}

    sync, awaited = methods(Client), methods(AsyncClient)
    assert sync == awaited
    assert {"enqueue", "batch", "get", "wait", "cancel", "retry", "list", "queues"} <= set(sync)
    plain = {
        name for name in awaited if not inspect.iscoroutinefunction(getattr(AsyncClient, name))
    }
    assert plain == {"iter_tasks"}  # an async iterator; every other method is awaited
    assert Client.task is Client.get and AsyncClient.tasks is AsyncClient.list  # the first names
