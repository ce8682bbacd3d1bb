"""The listing's filters, limit and cursor (GET /tasks, and the bulk actions'
filters): pure, each bounded, each bad input a 400 naming its field."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ntorque import selection
from ntorque.errors import InvalidRequest
from ntorque.tasks import Status, TaskFilter


def refused(field: str, values: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as caught:
        selection.task_filter(values, 7)
    assert caught.value.field == field, caught.value.message
    return caught.value.message


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_filters_are_read() -> None:
    chosen = selection.task_filter(
        {
            "status": "cancelled",
            "url_prefix": "https://example.com/é",
            "created_after": "1970-01-01T00:01:00Z",
            "created_before": 120,
            "limit": "5",  # paging is read apart
        },
        7,
    )
    assert chosen == TaskFilter(
        app_id=7,
        status=Status.CANCELLED,
        url_prefix="https://example.com/é",
        created_after=60.0,
        created_before=120.0,
    )


def test_no_filter_and_blank_filters_select_everything_in_scope() -> None:
    assert selection.task_filter({}, None) == TaskFilter(app_id=None)
    blank = {"status": "", "url_prefix": "", "created_after": "", "created_before": None}
    assert selection.task_filter(blank, 3) == TaskFilter(app_id=3)


@pytest.mark.parametrize("name", ["statuses", "url", "", "queues", "x" * 100])
def test_an_unknown_filter_is_refused_by_name(name: str) -> None:
    # a misspelt filter must never widen a bulk cancel to every task
    message = refused(name[:40], {name: "1"})
    assert message == f"unknown filter {name[:40]!r}"


@pytest.mark.parametrize("status", ["done", "PENDING", " pending", ["pending"], 1, {"a": 1}])
def test_status_must_be_one_of_the_statuses(status: object) -> None:
    assert refused("status", {"status": status}).startswith("status must be one of pending")


@pytest.mark.parametrize(
    "prefix", ["x" * 2049, 5, ["http://"], {"a": "b"}, True, "http://a/\x00", "a\nb", "\x7f"]
)
def test_url_prefix_is_bounded_text(prefix: object) -> None:
    # NUL reached PostgreSQL before (a 500): no url holds a control character
    assert refused("url_prefix", {"url_prefix": prefix}).startswith("url_prefix must")


def test_url_prefix_at_its_bound_and_with_wildcards_is_taken_as_given() -> None:
    for prefix in ("x" * 2048, "%", "_", "http://a/%25_"):
        assert selection.task_filter({"url_prefix": prefix}, 1).url_prefix == prefix


@pytest.mark.parametrize("field", ["created_after", "created_before"])
@pytest.mark.parametrize(
    "value", ["yesterday", "nan", "inf", "1e400", 10**400, float("nan"), [1], {"a": 1}, True]
)
def test_times_are_times(field: str, value: object) -> None:
    # 10**400: a JSON whole number too large for a float (an OverflowError before)
    refused(field, {field: value})


@pytest.mark.parametrize(("value", "expected"), [(None, 100), ("", 100), ("1", 1), ("1000", 1000)])
def test_limit(value: str | None, expected: int) -> None:
    assert selection.limit(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "1001", "9" * 5000, "1.5", "ten", "nan", [5]])
def test_limit_is_bounded(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        selection.limit(value)
    assert caught.value.field == "limit"


def test_a_cursor_stands_for_a_task_id() -> None:
    assert selection.before_id(None) is None
    assert selection.before_id("") is None
    assert selection.before_id(selection.cursor(42)) == 42
    assert selection.before_id(selection.cursor(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    "value",
    [
        encoded("t²"),  # "²".isdigit(), int("²") a ValueError: a 500 before
        encoded("t\u0661\u0662"),  # Arabic-Indic digits
        encoded("t" + "9" * 19),  # past a BIGINT: a database error before
        encoded("t9223372036854775808"),
        encoded("t" + "1" * 30),
        encoded("t"),
        encoded("t-1"),
        encoded("t 1"),
        encoded("x1"),
        "not base64!",
        "é",
        "\x00",
        "dA",  # "t"
        42,
    ],
)
def test_a_cursor_this_server_did_not_give_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        selection.before_id(value)
    assert caught.value.field == "cursor"
    assert caught.value.message == "cursor is not one this server gave"
