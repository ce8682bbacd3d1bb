"""Fast pure tests: settings, backoff, what a hook's answer means, validation
of new tasks, and the outgoing web-hook request."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders

from ntorque import backoff, config
from ntorque.config import Settings
from ntorque.errors import ConfigError, InvalidRequest
from ntorque.intake import new_task
from ntorque.targets import Policy
from ntorque.tasks import NewTask, Status, Task, Verdict
from ntorque.webhook import MAX_REDIRECTS, MIN_CALL_S, Webhook, classify, make_client

# -- settings --------------------------------------------------------------------

# (environment variable, setting, default, a value as written, the value it gives)
ENV_CASES: list[tuple[str, str, Any, str, Any]] = [
    ("NTORQUE_BACKOFF", "backoff", "exponential", "linear", "linear"),
    ("NTORQUE_CLEANUP_AFTER_DAYS", "cleanup_after_days", 7.0, "0.5", 0.5),
    ("NTORQUE_DEFAULT_TIMEOUT", "default_timeout_s", 60, "30", 30),
    ("NTORQUE_MIN_DUE_DELAY", "min_due_delay_s", 2.0, "0.25", 0.25),
    ("NTORQUE_MAX_DUE_DELAY", "max_due_delay_s", 7200.0, "600", 600.0),
    ("NTORQUE_MAX_RETRIES", "max_retries", 36, "5", 5),
    ("NTORQUE_REQUEUE_INTERVAL", "requeue_interval_s", 5.0, "0.5", 0.5),
    (
        "NTORQUE_TRANSIENT_REQUEST_ERRORS",
        "transient_codes",
        (408, 423, 429, 449),
        "503, 429,408",
        (408, 429, 503),
    ),
    ("NTORQUE_AUTHENTICATE", "authenticate", True, "false", False),
    ("NTORQUE_ENABLE_HSTS", "enable_hsts", False, "true", True),
    ("HSTS_PROTOCOL_HEADER", "hsts_protocol_header", "", "X-Forwarded-Proto", "X-Forwarded-Proto"),
    ("NTORQUE_AUTH_FAILURE_LIMIT", "auth_failure_limit", 20, "0", 0),
    ("NTORQUE_AUTH_FAILURE_WINDOW", "auth_failure_window_s", 60.0, "30", 30.0),
    ("NTORQUE_TRUST_PROXY_HEADERS", "trust_proxy_headers", False, "yes", True),
    ("NTORQUE_CERTFILE", "certfile", "", "/tls/cert.pem", "/tls/cert.pem"),
    ("NTORQUE_COOKIE_SECRET", "cookie_secret", "", "s" * 32, "s" * 32),
    ("NTORQUE_KEYFILE", "keyfile", "", "/tls/key.pem", "/tls/key.pem"),
    ("NTORQUE_REDIS_CHANNEL", "redis_channel", "ntorque", "jobs", "jobs"),
    ("REDIS_URL", "redis_url", "", "redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
    (
        "DATABASE_URL",
        "database_url",
        "sqlite:///ntorque.db",
        "postgresql://u@h/q",
        "postgresql://u@h/q",
    ),
    ("SQLALCHEMY_POOL_SIZE", "pool_size", 10, "3", 3),
    ("SQLALCHEMY_MAX_OVERFLOW", "max_overflow", 10, "0", 0),
    ("SQLALCHEMY_POOL_RECYCLE", "pool_recycle_s", 3600.0, "300", 300.0),
    ("SQLALCHEMY_POOL_CLASS", "pool_class", "", "NullPool", "NullPool"),
    ("MODE", "mode", "production", "development", "development"),
    ("NTORQUE_HOST", "host", "127.0.0.1", "0.0.0.0", "0.0.0.0"),
    ("NTORQUE_PORT", "port", 8888, "9000", 9000),
    ("NTORQUE_ROLE", "role", "all", "worker", "worker"),
    ("NTORQUE_CONCURRENCY", "concurrency", 50, "7", 7),
    ("NTORQUE_REQUEUE_BATCH", "requeue_batch", 1000, "10", 10),
    ("NTORQUE_CLEANUP_INTERVAL", "cleanup_interval_s", 7200.0, "60", 60.0),
    ("NTORQUE_CLEANUP_BATCH", "cleanup_batch", 500, "50", 50),
    ("NTORQUE_AUTH_CACHE", "auth_cache_s", 5.0, "0", 0.0),
    ("NTORQUE_MAX_BODY_SIZE", "max_body_bytes", 1024 * 1024, "2048", 2048),
    ("NTORQUE_CA_CERTS", "ca_certs", "", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
    ("NTORQUE_SHUTDOWN_GRACE", "shutdown_grace_s", 30.0, "2.5", 2.5),
    ("NTORQUE_DB_TIMEOUT", "db_timeout_s", 5.0, "1", 1.0),
    ("NTORQUE_ALLOW_PRIVATE_TARGETS", "allow_private_targets", True, "off", False),
    (
        "NTORQUE_TARGET_ALLOW",
        "target_allow",
        (),
        "10.0.0.0/8, *.example.com",
        ("10.0.0.0/8", "*.example.com"),
    ),
    ("NTORQUE_TARGET_DENY", "target_deny", (), "hooks.bad.test,", ("hooks.bad.test",)),
]


def test_defaults_without_any_setting() -> None:
    settings = config.load(environ={})
    assert settings == Settings()
    assert not settings.development


def test_every_environment_variable_is_covered_here() -> None:
    names = {name for names in config.ENVIRONMENT.values() for name in names}
    assert {case[0] for case in ENV_CASES} | {"PORT"} == names


@pytest.mark.parametrize(("name", "key", "default", "raw", "expected"), ENV_CASES)
def test_each_environment_variable_gives_a_typed_value(
    name: str, key: str, default: Any, raw: str, expected: Any
) -> None:
    assert getattr(config.load(environ={}), key) == default
    assert getattr(config.load(environ={name: ""}), key) == default  # empty is unset
    value = getattr(config.load(environ={name: raw}), key)
    assert value == expected
    assert type(value) is type(expected)


def test_max_retries_from_the_environment_is_an_int() -> None:
    """W8: "5" from the environment compares as the number 5 everywhere."""
    settings = config.load(environ={"NTORQUE_MAX_RETRIES": "5"})
    assert settings.max_retries == 5
    assert isinstance(settings.max_retries, int)
    assert config.load(environ={"NTORQUE_MAX_RETRIES": " 12 "}).max_retries == 12


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " yes "])
def test_true_spellings(raw: str) -> None:
    assert config.load(environ={"NTORQUE_ENABLE_HSTS": raw}).enable_hsts is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off"])
def test_false_spellings(raw: str) -> None:
    assert config.load(environ={"NTORQUE_AUTHENTICATE": raw}).authenticate is False


def test_development_mode() -> None:
    assert config.load(environ={"MODE": "development"}).development


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("NTORQUE_MAX_RETRIES", "abc"),
        ("NTORQUE_MAX_RETRIES", "2.5"),
        ("NTORQUE_MAX_RETRIES", "0"),
        ("NTORQUE_MAX_RETRIES", "-1"),
        ("NTORQUE_DEFAULT_TIMEOUT", "ten"),
        ("NTORQUE_MIN_DUE_DELAY", "-1"),
        ("NTORQUE_MIN_DUE_DELAY", "soon"),
        ("NTORQUE_MIN_DUE_DELAY", "nan"),
        ("NTORQUE_REQUEUE_INTERVAL", "0"),
        ("NTORQUE_REQUEUE_INTERVAL", "inf"),
        ("NTORQUE_MAX_DUE_DELAY", "30"),  # not longer than the default timeout (60)
        ("NTORQUE_CLEANUP_AFTER_DAYS", "0"),
        ("NTORQUE_BACKOFF", "quadratic"),
        ("NTORQUE_AUTHENTICATE", "maybe"),
        ("NTORQUE_ENABLE_HSTS", "2"),
        ("NTORQUE_TRANSIENT_REQUEST_ERRORS", "408,teapot"),
        ("NTORQUE_TRANSIENT_REQUEST_ERRORS", "408,700"),
        ("NTORQUE_ROLE", "both"),
        ("NTORQUE_PORT", "70000"),
        ("NTORQUE_PORT", "http"),
        ("NTORQUE_CONCURRENCY", "0"),
        ("NTORQUE_AUTH_CACHE", "-1"),
        ("NTORQUE_MAX_BODY_SIZE", "1MB"),
        ("DATABASE_URL", "mysql://u@h/q"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("SQLALCHEMY_POOL_SIZE", "0"),
        ("SQLALCHEMY_MAX_OVERFLOW", "-1"),
        ("SQLALCHEMY_POOL_CLASS", "StaticPool"),
        ("MODE", "dev"),
        ("NTORQUE_ALLOW_PRIVATE_TARGETS", "sometimes"),
        ("NTORQUE_TARGET_ALLOW", "10.0.0.0/33"),
        ("NTORQUE_TARGET_DENY", "hooks/bad"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(environ={name: raw})
    assert caught.value.message.startswith(f"{name}:"), caught.value.message


def test_port_falls_back_to_port() -> None:
    assert config.load(environ={"PORT": "9000"}).port == 9000
    assert config.load(environ={"PORT": "9000", "NTORQUE_PORT": "9001"}).port == 9001
    assert config.load(environ={"PORT": "9000", "NTORQUE_PORT": ""}).port == 9000
    with pytest.raises(ConfigError, match=r"^PORT:"):
        config.load(environ={"PORT": "web"})


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ntorque.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


YAML = """\
max_retries: 3
backoff: linear
min_due_delay_s: 1
transient_codes: [503, 408]
authenticate: false
redis_channel: from-yaml
"""


def test_yaml_file_under_the_environment(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, YAML)
    environ = {"NTORQUE_MAX_RETRIES": "9", "NTORQUE_REDIS_CHANNEL": "from-env"}
    for settings in (
        config.load(path, environ=environ),
        config.load(environ={**environ, "NTORQUE_CONFIG": path}),
    ):
        assert settings.max_retries == 9  # the environment wins
        assert settings.redis_channel == "from-env"
        assert settings.backoff == "linear"  # the file beats the defaults
        assert settings.min_due_delay_s == 1.0
        assert type(settings.min_due_delay_s) is float
        assert settings.transient_codes == (408, 503)
        assert settings.authenticate is False
        assert settings.default_timeout_s == 60


def test_command_line_over_the_environment(tmp_path: Path) -> None:
    environ = {"NTORQUE_PORT": "9000", "NTORQUE_ROLE": "web"}
    settings = config.load(environ=environ, overrides={"port": 9100, "role": None})
    assert (settings.port, settings.role) == (9100, "web")


def test_yaml_values_are_typed_and_checked(tmp_path: Path) -> None:
    settings = config.load(write_yaml(tmp_path, 'max_retries: "4"\n'), environ={})
    assert settings.max_retries == 4
    with pytest.raises(ConfigError, match=r"^max_retries \(in .*ntorque.yaml\)"):
        config.load(write_yaml(tmp_path, "max_retries: lots\n"), environ={})
    with pytest.raises(ConfigError, match=r"^max_retries \(in .*ntorque.yaml\)"):
        config.load(write_yaml(tmp_path, "max_retries: 2.5\n"), environ={})
    with pytest.raises(ConfigError, match=r"^authenticate \(in .*ntorque.yaml\)"):
        config.load(write_yaml(tmp_path, "authenticate: 2\n"), environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retries: 3\n", "unknown key 'retries'"),
        ("- max_retries\n", "must hold a mapping"),
        ("max_retries: [\n", "cannot read configuration file"),
    ],
)
def test_a_bad_yaml_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write_yaml(tmp_path, text), environ={})


def test_a_missing_yaml_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        config.load(str(tmp_path / "missing.yaml"), environ={})


def test_an_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert config.load(write_yaml(tmp_path, ""), environ={}) == Settings()


# -- backoff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (12, 4096), (13, 7200), (36, 7200), (10_000, 7200)],
)
def test_exponential_backoff(attempts: int, expected: float) -> None:
    delay = backoff.delay_s(attempts, kind="exponential", min_s=2, max_s=7200)
    assert delay == expected
    assert type(delay) is float


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 2), (1, 2), (2, 4), (3, 6), (36, 72), (3599, 7198), (3600, 7200), (10_000, 7200)],
)
def test_linear_backoff(attempts: int, expected: float) -> None:
    delay = backoff.delay_s(attempts, kind="linear", min_s=2, max_s=7200)
    assert delay == expected
    assert type(delay) is float


def test_backoff_with_fractional_delays() -> None:
    assert backoff.delay_s(3, kind="exponential", min_s=0.5, max_s=1.5) == 1.5
    assert backoff.delay_s(2, kind="exponential", min_s=0.5, max_s=1.5) == 1.0
    assert backoff.delay_s(2, kind="linear", min_s=0.25, max_s=10) == 0.5


# -- what a hook's answer means ---------------------------------------------------

TRANSIENT = (408, 423, 429, 449)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.COMPLETED),
        (201, Verdict.COMPLETED),
        (202, Verdict.FAILED),
        (204, Verdict.FAILED),
        (301, Verdict.FAILED),
        (304, Verdict.FAILED),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (408, Verdict.RETRY),
        (410, Verdict.FAILED),
        (423, Verdict.RETRY),
        (429, Verdict.RETRY),
        (449, Verdict.RETRY),
        (499, Verdict.FAILED),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
    ],
)
def test_classify(code: int, verdict: Verdict) -> None:
    assert classify(code, TRANSIENT) is verdict


def test_classify_uses_the_configured_transient_codes() -> None:
    assert classify(418, {418}) is Verdict.RETRY
    assert classify(429, ()) is Verdict.FAILED
    assert classify(503, ()) is Verdict.RETRY  # server errors are always retried


# -- new tasks --------------------------------------------------------------------


def make(
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"user_id=1234",
) -> NewTask:
    return new_task(
        app_id=7,
        query={"url": "http://example.com/hooks/send_email", **(query or {})},
        headers=HTTPHeaders(headers or {}),
        body=body,
        default_timeout_s=60,
        max_timeout_s=7200,
        policy=Policy(),
    )


def test_new_task_defaults() -> None:
    spec = make()
    assert spec == NewTask(
        app_id=7,
        url="http://example.com/hooks/send_email",
        method="POST",
        timeout_s=60,
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
            default_timeout_s=60,
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
    ("timeout", "expected"), [("", 60), ("1", 1), ("30", 30), (" 45 ", 45), ("7200", 7200)]
)
def test_timeouts(timeout: str, expected: int) -> None:
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
    assert (spec.body, spec.charset) == (binary, "utf-8")


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("text/plain; charset=klingon", b"x", "unknown charset 'klingon'"),
        ("text/plain; charset=utf-8", b"\xff\xfe\xfd", "the body is not valid utf-8"),
        ("text/plain; charset=ascii", "é".encode(), "the body is not valid ascii"),
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
        "x_trace": "abc",
    }


def test_pass_through_headers_from_a_plain_mapping_keep_their_name() -> None:
    spec = new_task(
        app_id=None,
        query={"url": "http://example.com/"},
        headers={"NTORQUE-PASSTHROUGH-X-Foo": "Bar", "NTORQUE_PASSTHROUGH_X-Baz": "Qux"},
        body=b"",
        default_timeout_s=60,
        max_timeout_s=7200,
        policy=Policy(),
    )
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
        new_task(
            app_id=None,
            query={"url": "http://example.com/"},
            headers={prefix + name: "x"},
            body=b"",
            default_timeout_s=60,
            max_timeout_s=7200,
            policy=Policy(),
        )


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nb", "a\rb", "a\x00b"])
def test_pass_through_values_with_line_breaks_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="control character"):
        new_task(
            app_id=None,
            query={"url": "http://example.com/"},
            headers={"NTORQUE-PASSTHROUGH-X-Foo": value},
            body=b"",
            default_timeout_s=60,
            max_timeout_s=7200,
            policy=Policy(),
        )


def passthrough(headers: dict[str, str]) -> NewTask:
    return new_task(
        app_id=None,
        query={"url": "http://example.com/"},
        headers=headers,
        body=b"",
        default_timeout_s=60,
        max_timeout_s=7200,
        policy=Policy(),
    )


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


# -- the stored task and the outgoing request -------------------------------------


def stored_task(**changes: Any) -> Task:
    values: dict[str, Any] = {
        "id": 42,
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
    }
    assert not stored_task().finished
    assert stored_task(status=Status.FAILED).finished


async def test_webhook_request(tmp_path: Path) -> None:
    client = make_client(1)
    try:
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text("", encoding="utf-8")
        webhook = Webhook(client, max_retries=36, transient_codes=TRANSIENT, ca_certs=str(ca_file))
        # Freshly leased: the lease (due) runs well past the 25 s timeout.
        request = webhook.request(stored_task(due=time.time() + 25 + 2))
    finally:
        client.close()

    assert isinstance(request, HTTPRequest)
    assert request.url == "https://example.com/hooks/send_email?x=1"
    assert request.method == "PUT"
    assert request.body == b'\x00{"user_id": 1234}\xff'
    assert {name.lower(): value for name, value in request.headers.items()} == {
        "x-foo": "Bar",
        "authorization": "Bearer t",
        "content-type": "application/json; charset=utf-8",
        "ntorque-task-id": "42",
        "ntorque-task-retry-count": "2",  # attempts before this one
        "ntorque-task-retry-limit": "36",
    }
    assert request.connect_timeout == 25
    assert request.request_timeout == 25
    # Webhook follows redirects itself, checking and pinning each hop's target
    # (tests/test_targets.py); curl must not follow them on its own.
    assert request.follow_redirects is False
    assert MAX_REDIRECTS == 10
    assert request.validate_cert is True
    assert request.ca_certs == str(ca_file)
    assert request.allow_nonstandard_methods is True  # a DELETE with a body


async def test_webhook_request_for_a_first_attempt_and_the_system_ca_bundle() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        request = webhook.request(stored_task(method="DELETE", retry_count=1, headers=()))
    finally:
        client.close()
    assert request.method == "DELETE"
    headers = HTTPHeaders(request.headers)
    assert headers["NTorque-Task-Retry-Count"] == "0"
    assert headers["NTorque-Task-Retry-Limit"] == "5"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.ca_certs is None or Path(request.ca_certs).is_file()


def response(code: int, body: bytes = b"", error: Exception | None = None) -> HTTPResponse:
    request = HTTPRequest("http://example.com/")
    return HTTPResponse(request, code, buffer=io.BytesIO(body), error=error)


async def test_webhook_outcome() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        done = webhook.outcome(response(201, b"created"), 100.0, 0.5)
        busy = webhook.outcome(response(503, b"  try later \n" + b"x" * 500), 100.0, 0.5)
        gone = webhook.outcome(response(404), 100.0, 0.5)
        down = webhook.outcome(
            response(599, error=ConnectionRefusedError("Connection refused")), 100.0, 0.5
        )
    finally:
        client.close()
    assert (done.verdict, done.status_code, done.error) == (Verdict.COMPLETED, 201, None)
    assert (done.started, done.duration_s) == (100.0, 0.5)
    assert (busy.verdict, busy.status_code) == (Verdict.RETRY, 503)
    assert busy.error == "HTTP 503 Service Unavailable: try later \n" + "x" * 187
    assert (gone.verdict, gone.status_code, gone.error) == (
        Verdict.FAILED,
        404,
        "HTTP 404 Not Found",
    )
    assert (down.verdict, down.status_code) == (Verdict.RETRY, None)
    assert down.error == "Connection refused"


@pytest.mark.parametrize("lease_left_s", [10.0, 0.5])
def test_webhook_call_never_outlasts_the_lease(lease_left_s: float) -> None:
    """A slow acquire can eat into the lease: the call is cut to what is left of it,
    so no other consumer can take the task while this call still runs."""
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() + lease_left_s))
    finally:
        webhook.client.close()
    assert request.request_timeout is not None and request.connect_timeout is not None
    assert lease_left_s - 0.5 < request.request_timeout <= lease_left_s
    assert request.connect_timeout == request.request_timeout


def test_webhook_call_with_its_lease_spent_still_happens_and_fails_fast() -> None:
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() - 5))
    finally:
        webhook.client.close()
    assert request.request_timeout == MIN_CALL_S


def test_a_logged_url_keeps_no_credentials_or_query() -> None:
    from ntorque.tasks import loggable_url

    assert loggable_url("https://u:pw@hooks.example.com:8443/a/b?token=s#f") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert loggable_url("http://127.0.0.1:5000/hook") == "http://127.0.0.1:5000/hook"
