"""A request body's JSON: parsed, bounded in depth, no lone surrogates; every
bad body a 400 (InvalidRequest), never a RecursionError or a database error
later. Found by the fuzz test: deep bodies crashed POST /tasks and
POST /tasks/cancel|retry; a lone surrogate reached the database."""

from __future__ import annotations

import pytest

from ntorque import jsonbody
from ntorque.errors import InvalidRequest


def test_json_is_read() -> None:
    assert jsonbody.loads(b'[{"url": "http://a/", "headers": {"X": "\\u00e9"}}]') == [
        {"url": "http://a/", "headers": {"X": "é"}}
    ]
    assert jsonbody.loads(b"null") is None
    assert jsonbody.loads('{"ü": "💥"}'.encode()) == {"ü": "💥"}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000,  # past Python's recursion limit: a RecursionError before
        b'{"a":' * 5000,
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_a_body_nested_past_the_parser_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="nested deeper than 32 levels"):
        jsonbody.loads(body)


def test_depth_is_bounded() -> None:
    assert jsonbody.loads(b"[" * 32 + b"]" * 32) is not None
    for body in (b"[" * 33 + b"]" * 33, b'{"a":' * 33 + b"1" + b"}" * 33):
        with pytest.raises(InvalidRequest, match="nested deeper"):
            jsonbody.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'"\\ud800"',
        b'["ok", {"url": "http://a/\\udfff"}]',
        b'{"\\ud800": 1}',  # a name too
        b'[{"headers": {"X": "a\\udc80b"}}]',
        '"\ud800"'.encode("utf-8", "surrogatepass"),  # as raw bytes, which json.loads lets in
    ],
)
def test_a_lone_surrogate_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        jsonbody.loads(body)


def test_a_surrogate_pair_is_one_character() -> None:
    assert jsonbody.loads(b'"\\ud83d\\udca5"') == "💥"


@pytest.mark.parametrize(
    "body", [b"", b"[{", b"\xff\xfe\x00", b"[1e99999", b"[" + b"9" * 5000 + b"]"]
)
def test_what_does_not_parse_gets_the_callers_message(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"^not a batch$"):
        jsonbody.loads(body, "not a batch")
