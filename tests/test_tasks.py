"""The stored task's JSON, and urls as logs show them."""

from __future__ import annotations

from typing import Any

import pytest

from ntorque.tasks import Status, Task

# -- the stored task and the outgoing request -------------------------------------


def stored_task(**changes: Any) -> Task:
    values: dict[str, Any] = {
        "id": 42,
        "queue": "default",
        "app_id": None,
        "url": "https://example.com/hooks/send_email?x=1",
        "method": "PUT",
        "timeout_s": 25,
        "body": b'\x00{"user_id": 1234}\xff',
        "content_type": "application/json",
        "charset": "utf-8",
        "headers": (("X-Foo", "Bar"), ("Authorization", "Bearer t")),
        "status": Status.IN_PROGRESS,
        "retry_count": 3,
        "due": 1_700_000_100.0,
        "created": 1_700_000_000.0,
        "modified": 1_700_000_050.5,
        "last_status_code": 503,
        "last_error": "HTTP 503 Service Unavailable",
    }
    values.update(changes)
    return Task(**values)


def test_task_json() -> None:
    assert stored_task().to_json() == {
        "id": 42,
        "queue": "default",
        "url": "https://example.com/hooks/send_email?x=1",
        "method": "PUT",
        "status": "in_progress",
        "retry_count": 3,
        "timeout": 25,
        "due": "2023-11-14T22:15:00+00:00",
        "created": "2023-11-14T22:13:20+00:00",
        "modified": "2023-11-14T22:14:10.500000+00:00",
        "last_status_code": 503,
        "last_error": "HTTP 503 Service Unavailable",
        "content_type": "application/json",
        "charset": "utf-8",
        "headers": {"X-Foo": "Bar", "Authorization": "Bearer t"},
        "body_size": 19,
        "retries": None,
        "backoff": None,
        "callback_url": None,
        "callback_task_id": None,
        "callback_of": None,
        "schedule_id": None,
        "schedule_tick": None,
    }
    assert not stored_task().finished
    assert stored_task(status=Status.FAILED).finished


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
def test_a_finished_task_is_due_no_more(status: Status) -> None:
    """Its due date is its last lease: the JSON shows none (API.md: null)."""
    task = stored_task(status=status)
    assert task.finished
    assert task.to_json()["due"] is None


def test_a_task_made_by_a_schedule_names_it_and_its_tick() -> None:
    made = stored_task(schedule_id=7, schedule_tick=1_700_000_040.0).to_json()
    assert (made["schedule_id"], made["schedule_tick"]) == (7, "2023-11-14T22:14:00+00:00")


def test_a_logged_url_keeps_no_credentials_or_query() -> None:
    from ntorque.tasks import loggable_url

    assert loggable_url("https://u:pw@hooks.example.com:8443/a/b?token=s#f") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert loggable_url("http://127.0.0.1:5000/hook") == "http://127.0.0.1:5000/hook"
