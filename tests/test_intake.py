"""Validating an enqueue request into a new task: url, method, timeout,
content type and charset, pass-through headers."""

from __future__ import annotations

import json

import pytest
from tornado.httputil import HTTPHeaders

from ntorque.errors import InvalidRequest
from ntorque.intake import new_task
from ntorque.targets import Policy
from ntorque.tasks import NewTask

# -- new tasks --------------------------------------------------------------------


def make(
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"user_id=1234",
    *,
    plain: bool = False,
) -> NewTask:
    """An enqueue request as the server sees it (tornado's headers, whose names
    it normalises), or with the headers as a plain mapping (the outbox's)."""
    given = dict(headers or {}) if plain else HTTPHeaders(headers or {})
    return new_task(
        app_id=7,
        query={"url": "http://example.com/hooks/send_email", **(query or {})},
        headers=given,
        body=body,
        max_timeout_s=7200,
        policy=Policy(),
    )


def test_new_task_defaults() -> None:
    spec = make()
    assert spec == NewTask(
        app_id=7,
        url="http://example.com/hooks/send_email",
        method="POST",
        timeout_s=None,  # not given: its queue's, else the server's (the insert fills it in)
        body=b"user_id=1234",
        content_type="application/x-www-form-urlencoded",
        charset="utf-8",
        headers=(),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks/a?b=c&d=e",
        "https://example.com:8443/x",
        "HTTPS://EXAMPLE.COM/",
        "http://127.0.0.1:9/",
        "http://[::1]:8080/hook",
        "http://example.com/" + "a" * 2000,
    ],
)
def test_valid_urls(url: str) -> None:
    assert make({"url": url}).url == url


def test_url_is_stripped() -> None:
    assert make({"url": "  http://example.com/x \n"}).url == "http://example.com/x"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "example.com/hook",
        "/relative/hook",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "http://",
        "http:///path",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/\x00",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest, match="url"):
        make({"url": url})


def test_url_is_required() -> None:
    with pytest.raises(InvalidRequest, match="url is required"):
        new_task(
            app_id=None,
            query={},
            headers={},
            body=b"",
            max_timeout_s=7200,
            policy=Policy(),
        )


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("POST", "POST"),
        ("put", "PUT"),
        ("Patch", "PATCH"),
        ("delete", "DELETE"),
        (" post ", "POST"),
    ],
)
def test_methods_are_case_insensitive(method: str, expected: str) -> None:
    assert make({"method": method}).method == expected


@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "OPTIONS", "CONNECT", "", "POSTX"])
def test_other_methods_are_refused(method: str) -> None:
    with pytest.raises(InvalidRequest, match="method must be one of POST, PUT, PATCH, DELETE"):
        make({"method": method})


@pytest.mark.parametrize(
    ("timeout", "expected"), [("", None), ("1", 1), ("30", 30), (" 45 ", 45), ("7200", 7200)]
)
def test_timeouts(timeout: str, expected: int | None) -> None:
    assert make({"timeout": timeout}).timeout_s == expected


@pytest.mark.parametrize("timeout", ["0", "-5", "7201", "1.5", "ten", "1e3"])
def test_bad_timeouts_are_refused(timeout: str) -> None:
    with pytest.raises(InvalidRequest, match="timeout"):
        make({"timeout": timeout})


@pytest.mark.parametrize(
    ("header", "content_type", "charset"),
    [
        ("application/json", "application/json", "utf-8"),
        ("Application/JSON; charset=UTF-8", "application/json", "UTF-8"),
        ("text/plain; charset=ISO-8859-1", "text/plain", "ISO-8859-1"),
        ('text/plain; format=flowed; charset="latin-1"', "text/plain", "latin-1"),
        ("text/plain;charset=utf-16", "text/plain", "utf-16"),
        ("", "application/x-www-form-urlencoded", "utf-8"),
    ],
)
def test_content_type_and_charset(header: str, content_type: str, charset: str) -> None:
    body = "é".encode(charset)
    spec = make(headers={"Content-Type": header} if header else {}, body=body)
    assert (spec.content_type, spec.charset, spec.body) == (content_type, charset, body)


def test_a_body_without_a_charset_is_kept_as_bytes() -> None:
    binary = bytes(range(256))
    spec = make(headers={"Content-Type": "application/octet-stream"}, body=binary)
    assert (spec.body, spec.charset) == (binary, "")  # no charset is made up


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("text/plain; charset=klingon", b"x", "unknown charset 'klingon'"),
        ("text/plain; charset=utf-8", b"\xff\xfe\xfd", "the body is not valid utf-8"),
        ("text/plain; charset=ascii", "é".encode(), "the body is not valid ascii"),
        # codecs that raise UnicodeError itself, not UnicodeDecodeError: a 500 before
        ("text/plain; charset=undefined", b"x", "the body is not valid undefined"),
        ("text/plain; charset=rot13", b"x", "the body is not valid rot13"),
        ("text/\x01plain", b"x", "Content-Type is not valid"),
        ("text/" + "p" * 260, b"x", "Content-Type is not valid"),
    ],
)
def test_bad_content_types_are_refused(header: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        make(headers={"Content-Type": header}, body=body)


def test_pass_through_headers_both_forms_without_their_prefix() -> None:
    spec = make(
        headers={
            "NTORQUE-PASSTHROUGH-X-Foo": "Bar",
            "ntorque-passthrough-Authorization": "Bearer secret",
            "NTORQUE_PASSTHROUGH_X_Trace": "abc",
            "User-Agent": "curl",
            "NTORQUE_API_KEY": "key",
        }
    )
    assert {name.lower(): value for name, value in spec.headers} == {
        "x-foo": "Bar",
        "authorization": "Bearer secret",
        "x-trace": "abc",  # the underscore form is hyphenated, as the original did
    }


def test_pass_through_headers_from_a_plain_mapping_keep_their_name() -> None:
    spec = passthrough({"NTORQUE-PASSTHROUGH-X-Foo": "Bar", "NTORQUE_PASSTHROUGH_X-Baz": "Qux"})
    assert spec.headers == (("X-Foo", "Bar"), ("X-Baz", "Qux"))


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "Content-Length",
        "content-type",
        "Transfer-Encoding",
        "Connection",
        "NTorque-Task-Id",
        "ntorque-task-retry-count",
        "NTORQUE-TASK-RETRY-LIMIT",
        "",
    ],
)
@pytest.mark.parametrize("prefix", ["NTORQUE-PASSTHROUGH-", "NTORQUE_PASSTHROUGH_"])
def test_reserved_pass_through_headers_are_refused(prefix: str, name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not allowed"):
        passthrough({prefix + name: "x"})


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nb", "a\rb", "a\x00b"])
def test_pass_through_values_with_line_breaks_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="control character"):
        passthrough({"NTORQUE-PASSTHROUGH-X-Foo": value})


def passthrough(headers: dict[str, str]) -> NewTask:
    return make(headers=headers, body=b"", plain=True)


def test_pass_through_bounds() -> None:
    fifty = {f"NTORQUE-PASSTHROUGH-X-{n}": "v" for n in range(50)}
    assert len(passthrough(fifty).headers) == 50
    with pytest.raises(InvalidRequest, match="at most 50 pass-through headers"):
        passthrough({**fifty, "NTORQUE-PASSTHROUGH-X-One-More": "v"})
    assert passthrough({"NTORQUE-PASSTHROUGH-" + "N" * 256: "v" * 8192}).headers
    with pytest.raises(InvalidRequest, match=r"name 'NNN.* is not valid"):
        passthrough({"NTORQUE-PASSTHROUGH-" + "N" * 257: "v"})
    with pytest.raises(InvalidRequest, match="longer than 8192"):
        passthrough({"NTORQUE-PASSTHROUGH-X-Big": "v" * 8193})


@pytest.mark.parametrize("name", ["X Foo", "X:Foo", "X(Foo)", "Zoë", "X/Y", 'X"'])
def test_pass_through_names_must_be_tokens(name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not valid"):
        passthrough({"NTORQUE-PASSTHROUGH-" + name: "v"})


@pytest.mark.parametrize(
    "name", ["Proxy-Authorization", "Expect", "TE", "webhook-signature", "Webhook-Id"]
)
def test_hop_by_hop_and_signing_headers_cannot_be_passed_through(name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not allowed"):
        passthrough({"NTORQUE-PASSTHROUGH-" + name: "v"})


@pytest.mark.parametrize("value", ["a\x01b", "a\x7fb", "a\x1bb", "a\x0bb"])
def test_pass_through_values_with_other_controls_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="control character"):
        passthrough({"NTORQUE-PASSTHROUGH-X-Foo": value})


def test_pass_through_values_may_hold_tabs_and_text() -> None:
    headers = passthrough({"NTORQUE-PASSTHROUGH-X-Foo": "a\tb c, d=é"}).headers
    assert headers == (("X-Foo", "a\tb c, d=é"),)


@pytest.mark.parametrize(
    "header",
    [
        "text/plain; charset=" + "u" * 41,
        "text/plain; charset=utf 8",
        "text/plain; charset=Ā",
    ],
)
def test_charset_names_are_bounded(header: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown charset"):
        make(headers={"Content-Type": header}, body=b"x")


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1/",
        "http://exämple.com/",
        "http://[::1]x/",
        "http://ex*ample.com/",
        "http://example.com\\@evil.test/",
    ],
)
def test_url_hosts_must_be_plain(url: str) -> None:
    with pytest.raises(InvalidRequest, match="url"):
        make({"url": url})


# -- content labels and pass-through names -------------------------------------

LATIN1 = "Crème brûlée, façon à part".encode("latin-1")  # not valid UTF-8
UTF8 = "Grüße, 世界! 🎉".encode()
BINARY = bytes(range(256))


def labelled(headers: dict[str, str], body: bytes = b"") -> NewTask:
    """An enqueue request as the server sees it (tornado's headers)."""
    return make(headers=headers, body=body)


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
    spec = labelled({"Content-Type": header} if header else {}, body)
    assert (spec.content_type, spec.charset, spec.body) == (content_type, charset, body)


def test_latin1_bytes_are_refused_only_when_declared_utf8() -> None:
    """The issue's pair: undeclared, accepted with no charset; declared
    UTF-8, refused (a declared charset is checked)."""
    assert labelled({"Content-Type": "text/plain"}, LATIN1).charset == ""
    with pytest.raises(InvalidRequest, match="the body is not valid utf-8"):
        labelled({"Content-Type": "text/plain; charset=utf-8"}, LATIN1)
    with pytest.raises(InvalidRequest, match="the body is not valid utf-8"):
        labelled({"Content-Type": "application/octet-stream; charset=utf-8"}, BINARY)


# -- pass-through header names ----------------------------------------------------


def test_underscore_pass_through_names_take_hyphens() -> None:
    """NTORQUE_PASSTHROUGH_X_Trace arrives as X-Trace, as in the original
    (tornado has already folded its case to Ntorque_passthrough_x_trace)."""
    spec = labelled(
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
    spec = passthrough({"NTORQUE-PASSTHROUGH-X_Keep_Me": "a", "NTORQUE-PASSTHROUGH-x-lower": "b"})
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
        labelled({name: "v"})


def test_a_name_that_is_not_ascii_is_not_folded_into_one() -> None:
    """ "\ufb01" would capitalise to "Fi": such a name is refused, not mended."""
    with pytest.raises(InvalidRequest, match="is not valid"):
        passthrough({"NTORQUE_PASSTHROUGH_\ufb01le": "v"})
