"""Validating an enqueue request, in-process: the content type and charset a
task keeps (the label its hook will get), and pass-through header names.
"""

from __future__ import annotations

import json

import pytest
from tornado.httputil import HTTPHeaders

from ntorque.errors import InvalidRequest
from ntorque.intake import new_task
from ntorque.targets import Policy
from ntorque.tasks import NewTask

LATIN1 = "Crème brûlée, façon à part".encode("latin-1")  # not valid UTF-8
UTF8 = "Grüße, 世界! 🎉".encode()
BINARY = bytes(range(256))


def make(headers: dict[str, str], body: bytes = b"") -> NewTask:
    """An enqueue request as the server sees it (tornado's headers)."""
    return new_task(
        app_id=None,
        query={"url": "http://example.com/hook"},
        headers=HTTPHeaders(headers),
        body=body,
        default_timeout_s=60,
        max_timeout_s=7200,
        policy=Policy(),
    )


@pytest.mark.parametrize(
    ("header", "body", "content_type", "charset"),
    [
        # Not textual, no charset given: none is made up, whatever the bytes.
        ("application/octet-stream", BINARY, "application/octet-stream", ""),
        ("application/octet-stream", b"plain ascii", "application/octet-stream", ""),
        ("image/png", b"\x89PNG\r\n\x1a\n", "image/png", ""),
        ("application/pdf", b"", "application/pdf", ""),
        # Given: kept (and checked), for any type.
        ("application/octet-stream; charset=utf-8", UTF8, "application/octet-stream", "utf-8"),
        ("text/plain; charset=latin1", LATIN1, "text/plain", "latin1"),
        (
            "application/x-www-form-urlencoded; charset=latin1",
            b"a=\xe9",
            "application/x-www-form-urlencoded",
            "latin1",
        ),
        # Textual, none given, valid UTF-8: UTF-8 (the original's default).
        ("text/plain", UTF8, "text/plain", "utf-8"),
        ("text/csv", b"a,b\n1,2\n", "text/csv", "utf-8"),
        ("text/plain", b"", "text/plain", "utf-8"),
        ("application/json", json.dumps({"n": "Zoë"}).encode(), "application/json", "utf-8"),
        ("Application/Problem+JSON", b"{}", "application/problem+json", "utf-8"),
        ("application/x-www-form-urlencoded", b"a=1", "application/x-www-form-urlencoded", "utf-8"),
        ("", b"user_id=1234", "application/x-www-form-urlencoded", "utf-8"),
        ("application/xml", b"<a/>", "application/xml", "utf-8"),
        ("text/xml", b"<a/>", "text/xml", "utf-8"),
        ("application/atom+xml", b"<feed/>", "application/atom+xml", "utf-8"),
        # Textual, none given, not UTF-8: accepted, with no charset (never a false one).
        ("text/plain", LATIN1, "text/plain", ""),
        ("application/json", b'{"n": "Zo\xeb"}', "application/json", ""),
        ("", b"name=caf\xe9", "application/x-www-form-urlencoded", ""),
        ("application/xml", b"<a>\xe9</a>", "application/xml", ""),
    ],
)
def test_the_charset_kept_is_given_or_true(
    header: str, body: bytes, content_type: str, charset: str
) -> None:
    spec = make({"Content-Type": header} if header else {}, body)
    assert (spec.content_type, spec.charset, spec.body) == (content_type, charset, body)


def test_latin1_bytes_are_refused_only_when_declared_utf8() -> None:
    """The issue's pair: undeclared, accepted with no charset; declared
    UTF-8, refused (a declared charset is checked)."""
    assert make({"Content-Type": "text/plain"}, LATIN1).charset == ""
    with pytest.raises(InvalidRequest, match="the body is not valid utf-8"):
        make({"Content-Type": "text/plain; charset=utf-8"}, LATIN1)
    with pytest.raises(InvalidRequest, match="the body is not valid utf-8"):
        make({"Content-Type": "application/octet-stream; charset=utf-8"}, BINARY)


# -- pass-through header names ----------------------------------------------------


def test_underscore_pass_through_names_take_hyphens() -> None:
    """NTORQUE_PASSTHROUGH_X_Trace arrives as X-Trace, as in the original
    (tornado has already folded its case to Ntorque_passthrough_x_trace)."""
    spec = make(
        {
            "NTORQUE_PASSTHROUGH_X_Trace": "t",
            "ntorque_passthrough_x_request_id": "r",
            "NTORQUE_PASSTHROUGH_X-Mixed_Form": "m",
            "NTORQUE-PASSTHROUGH-X-Foo": "bar",
        }
    )
    assert dict(spec.headers) == {
        "X-Trace": "t",
        "X-Request-Id": "r",
        "X-Mixed-Form": "m",
        "X-Foo": "bar",
    }


def test_the_hyphen_form_keeps_names_as_given() -> None:
    spec = new_task(
        app_id=None,
        query={"url": "http://example.com/"},
        headers={"NTORQUE-PASSTHROUGH-X_Keep_Me": "a", "NTORQUE-PASSTHROUGH-x-lower": "b"},
        body=b"",
        default_timeout_s=60,
        max_timeout_s=7200,
        policy=Policy(),
    )
    assert spec.headers == (("X_Keep_Me", "a"), ("x-lower", "b"))


@pytest.mark.parametrize(
    "name",
    [
        "NTORQUE_PASSTHROUGH_Content_Type",
        "NTORQUE_PASSTHROUGH_NTorque_Task_Id",
        "ntorque_passthrough_webhook_signature",
        "NTORQUE_PASSTHROUGH_Transfer_Encoding",
    ],
)
def test_underscore_names_are_checked_once_hyphenated(name: str) -> None:
    """Content_Type would go out as Content-Type: reserved, so refused."""
    with pytest.raises(InvalidRequest, match="is not allowed"):
        make({name: "v"})


def test_a_name_that_is_not_ascii_is_not_folded_into_one() -> None:
    """ "\ufb01" would capitalise to "Fi": such a name is refused, not mended."""
    with pytest.raises(InvalidRequest, match="is not valid"):
        new_task(
            app_id=None,
            query={"url": "http://example.com/"},
            headers={"NTORQUE_PASSTHROUGH_\ufb01le": "v"},
            body=b"",
            default_timeout_s=60,
            max_timeout_s=7200,
            policy=Policy(),
        )
