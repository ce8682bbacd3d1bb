"""A batch enqueue's JSON array into validated tasks (POST /tasks): pure, all
or nothing; each bad item named by its index and field, each bound on
either side."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest

from ntorque import batch, intake
from ntorque.errors import InvalidBatch, InvalidRequest
from ntorque.targets import Policy
from ntorque.tasks import Keyed

URL = "http://example.com/hook"
MAX_BODY = 1000
NOW = 1_800_000_000.0

read_item = functools.partial(
    intake.new_task,
    app_id=7,
    max_timeout_s=7200,
    policy=Policy(),
    limits=intake.Limits(max_retries=10),
    now=NOW,
)


def read(query: dict[str, str], headers: dict[str, str], body: bytes) -> Any:
    return read_item(query=query, headers=headers, body=body)


def parse(value: Any) -> list[batch.Item]:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return batch.parse(body, read, MAX_BODY)


def errors(value: Any) -> list[dict[str, object]]:
    with pytest.raises(InvalidBatch) as caught:
        parse(value)
    return caught.value.errors


def test_items_are_read_as_single_enqueues_are() -> None:
    items = parse(
        [
            {"url": URL},
            {
                "url": URL,
                "method": "put",
                "timeout": 30,
                "delay": 60,
                "retries": 3,
                "backoff": "linear",
                "callback": URL + "/done",
                "body": "é",
                "charset": "latin-1",
                "content_type": "text/plain",
                "headers": {"X-Trace": "1"},
                "idempotency_key": "k1",
            },
            {"url": URL, "eta": NOW + 10, "body_base64": base64.b64encode(b"\xff\x00").decode()},
        ]
    )
    (first, none), (second, keyed), (third, _) = items
    assert (first.url, first.method, first.body, none) == (URL, "POST", b"", None)
    assert second.method == "PUT" and second.timeout_s == 30 and second.due == NOW + 60
    assert (second.retries, second.backoff, second.callback_url) == (3, "linear", URL + "/done")
    assert (second.body, second.content_type, second.charset) == (b"\xe9", "text/plain", "latin-1")
    assert second.headers == (("X-Trace", "1"),)
    assert keyed == Keyed("k1", intake.fingerprint(second))
    assert (third.body, third.due) == (b"\xff\x00", NOW + 10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body must be a JSON array of tasks"),
        (b"[{", "the body must be a JSON array of tasks"),
        (b"\xff", "the body must be a JSON array of tasks"),
        (b"[]", "the body must be a JSON array of tasks, not empty"),
        (b"{}", "the body must be a JSON array of tasks, not empty"),
        (b'"x"', "the body must be a JSON array of tasks, not empty"),
        (b"null", "the body must be a JSON array of tasks, not empty"),
        (b"[" * 5000, "nested deeper than 32 levels"),  # a RecursionError before
        (json.dumps([{"url": URL}] * 1001).encode(), "at most 1000 tasks"),
    ],
)
def test_a_body_that_is_no_batch_is_one_error(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        parse(body)
    assert not isinstance(caught.value, InvalidBatch)


def test_a_thousand_items_is_the_bound() -> None:
    assert len(parse([{"url": URL}] * 1000)) == 1000


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": 5}, "url"),
        ({"url": URL, "method": "GET"}, "method"),
        ({"url": URL, "method": True}, "method"),
        ({"url": URL, "timeout": 0}, "timeout"),
        ({"url": URL, "timeout": 1.5}, "timeout"),
        ({"url": URL, "timeout": [1]}, "timeout"),
        ({"url": URL, "delay": -1}, "delay"),
        ({"url": URL, "delay": "nan"}, "delay"),
        ({"url": URL, "delay": 1e400}, "delay"),  # json.dumps writes Infinity
        ({"url": URL, "delay": 10**400}, "delay"),
        ({"url": URL, "delay": 1, "eta": NOW + 5}, "eta"),
        ({"url": URL, "eta": NOW - 60}, "eta"),
        ({"url": URL, "eta": "2027-01-15T08:00:00"}, "eta"),
        ({"url": URL, "eta": {"at": 1}}, "eta"),
        ({"url": URL, "retries": 0}, "retries"),
        ({"url": URL, "retries": 11}, "retries"),
        ({"url": URL, "retries": "9" * 5000}, "retries"),
        ({"url": URL, "backoff": "fibonacci"}, "backoff"),
        ({"url": URL, "callback": "javascript:alert(1)"}, "callback"),
        ({"url": URL, "callback": URL, "body": 5}, "body"),
        ({"url": URL, "body": "x" * (MAX_BODY + 1)}, "body"),
        ({"url": URL, "body_base64": base64.b64encode(b"x" * (MAX_BODY + 1)).decode()}, "body"),
        ({"url": URL, "body": "a", "body_base64": "YQ=="}, "body_base64"),
        ({"url": URL, "body_base64": "not base64!"}, "body_base64"),
        ({"url": URL, "body_base64": 5}, "body_base64"),
        ({"url": URL, "body": "é", "charset": "ascii"}, "body"),
        ({"url": URL, "body": "a..b", "charset": "idna"}, "body"),  # UnicodeError: a 500 before
        ({"url": URL, "body": "a", "charset": "utf\x00"}, "charset"),  # ValueError: a 500 before
        ({"url": URL, "body": "a", "charset": "rot13"}, "charset"),
        ({"url": URL, "body": "a", "charset": "klingon"}, "charset"),
        ({"url": URL, "charset": 8}, "charset"),
        ({"url": URL, "content_type": "text/\x01"}, "content_type"),
        ({"url": URL, "content_type": ["text/plain"]}, "content_type"),
        ({"url": URL, "headers": ["X-A", "1"]}, "headers"),
        ({"url": URL, "headers": False}, "headers"),
        ({"url": URL, "headers": {"X-A": 1}}, "headers"),
        ({"url": URL, "headers": {"X-A": "💥"}}, "headers"),  # no HTTP header carries it
        ({"url": URL, "headers": {"Host": "a"}}, "headers"),
        ({"url": URL, "headers": {"X A": "a"}}, "headers"),
        ({"url": URL, "headers": {"X-A": "a\nb"}}, "headers"),
        ({"url": URL, "idempotency_key": ""}, "idempotency_key"),
        ({"url": URL, "idempotency_key": "k" * 256}, "idempotency_key"),
        ({"url": URL, "idempotency_key": "clé"}, "idempotency_key"),
        ({"url": URL, "idempotency_key": 5}, "idempotency_key"),
        ({"url": URL, "priority": 1}, "priority"),
        ({"url": URL, "x" * 100: 1}, "x" * 40),
    ],
)
def test_each_bad_item_is_named_by_index_and_field(item: dict[str, Any], field: str) -> None:
    found = errors([{"url": URL}, item])
    assert len(found) == 1
    assert found[0]["index"] == 1 and found[0]["field"] == field, found
    assert isinstance(found[0]["error"], str) and found[0]["error"]


def test_header_values_in_latin1_pass_as_a_single_enqueue_s_do() -> None:
    ((spec, _),) = parse([{"url": URL, "headers": {"X-A": "café", "X-B": ""}}])
    assert spec.headers == (("X-A", "café"), ("X-B", ""))


@pytest.mark.parametrize("item", [5, "x", None, [], [{"url": URL}], True])
def test_an_item_that_is_no_object_is_named_by_index(item: Any) -> None:
    assert errors([item]) == [
        {"index": 0, "field": None, "error": "each task must be a JSON object"}
    ]


def test_every_bad_item_is_named_up_to_a_bound() -> None:
    found = errors([{"url": URL}] + [{"url": URL, "retries": 0}] * 150)
    assert len(found) == batch.MAX_ERRORS
    assert [error["index"] for error in found] == list(range(1, 101))


def test_a_key_twice_in_one_batch_is_refused() -> None:
    found = errors([{"url": URL, "idempotency_key": "k"}, {"url": URL, "idempotency_key": "k"}])
    assert found == [
        {
            "index": 1,
            "field": "idempotency_key",
            "error": "this idempotency_key is in the batch twice",
        }
    ]
