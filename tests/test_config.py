"""Settings: defaults < YAML file < environment < command line, typed and
checked; config.example.yml documents every one."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from ntorque import config
from ntorque.config import Settings
from ntorque.errors import ConfigError

# -- settings --------------------------------------------------------------------

# (environment variable, setting, default, a value as written, the value it gives)
ENV_CASES: list[tuple[str, str, Any, str, Any]] = [
    ("NTORQUE_BACKOFF", "backoff", "exponential", "linear", "linear"),
    ("NTORQUE_CLEANUP_AFTER_DAYS", "cleanup_after_days", 7.0, "0.5", 0.5),
    ("NTORQUE_DEFAULT_TIMEOUT", "default_timeout_s", 60, "30", 30),
    ("NTORQUE_MIN_DUE_DELAY", "min_due_delay_s", 2.0, "0.25", 0.25),
    ("NTORQUE_HEADER_TIMEOUT", "header_timeout_s", 20.0, "2.5", 2.5),
    ("NTORQUE_BODY_TIMEOUT", "body_timeout_s", 60.0, "30", 30.0),
    ("NTORQUE_IDLE_TIMEOUT", "idle_timeout_s", 60.0, "15", 15.0),
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
    ("NTORQUE_METRICS_TOKEN", "metrics_token", "", "t" * 20, "t" * 20),
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
    ("NTORQUE_LOG_FORMAT", "log_format", "text", "json", "json"),
    ("NTORQUE_HOST", "host", "127.0.0.1", "0.0.0.0", "0.0.0.0"),
    ("NTORQUE_PORT", "port", 8888, "9000", 9000),
    ("NTORQUE_ROLE", "role", "all", "worker", "worker"),
    ("NTORQUE_PROCESSES", "processes", 1, " 1 ", 1),  # more: see test_several_processes_*
    ("NTORQUE_CONCURRENCY", "concurrency", 50, "7", 7),
    ("NTORQUE_REQUEUE_BATCH", "requeue_batch", 1000, "10", 10),
    ("NTORQUE_MAX_SCHEDULE_AHEAD", "max_schedule_ahead_s", 2592000.0, "3600", 3600.0),
    ("NTORQUE_IDEMPOTENCY_WINDOW", "idempotency_window_s", 86400.0, "60.5", 60.5),
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
        ("NTORQUE_PROCESSES", "-1"),
        ("NTORQUE_PROCESSES", "1.5"),
        ("NTORQUE_PROCESSES", "two"),
        ("NTORQUE_PROCESSES", "2"),  # the embedded SQLite file and in-process channel
        ("NTORQUE_AUTH_CACHE", "-1"),
        ("NTORQUE_MAX_BODY_SIZE", "1MB"),
        ("DATABASE_URL", "mysql://u@h/q"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("SQLALCHEMY_POOL_SIZE", "0"),
        ("SQLALCHEMY_MAX_OVERFLOW", "-1"),
        ("SQLALCHEMY_POOL_CLASS", "StaticPool"),
        ("SQLALCHEMY_POOL_CLASS", "sqlalchemy.pool.StaticPool"),
        ("SQLALCHEMY_POOL_CLASS", "sqlalchemy.NullPool"),
        ("MODE", "dev"),
        ("NTORQUE_LOG_FORMAT", "xml"),
        ("NTORQUE_ALLOW_PRIVATE_TARGETS", "sometimes"),
        ("NTORQUE_TARGET_ALLOW", "10.0.0.0/33"),
        ("NTORQUE_TARGET_DENY", "hooks/bad"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(environ={name: raw})
    assert caught.value.message.startswith(f"{name}:"), caught.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sqlalchemy.pool.NullPool", "NullPool"),  # the original nTorque's spelling
        ("sqlalchemy.pool.impl.NullPool", "NullPool"),
        ("sqlalchemy.pool.QueuePool", "QueuePool"),
        ("sqlalchemy.pool.AsyncAdaptedQueuePool", "QueuePool"),
        ("QueuePool", "QueuePool"),
    ],
)
def test_dotted_pool_class_names_are_accepted(raw: str, expected: str) -> None:
    assert config.load(environ={"SQLALCHEMY_POOL_CLASS": raw}).pool_class == expected


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


# -- config.example.yml --------------------------------------------------------

EXAMPLE = Path(__file__).parent.parent / "config.example.yml"


def test_example_lists_every_setting() -> None:
    keys = set(yaml.safe_load(EXAMPLE.read_text()))
    assert keys == {field.name for field in fields(config.Settings)}


def test_example_values_are_the_defaults() -> None:
    assert config.load(str(EXAMPLE), environ={}) == config.Settings()


def test_example_names_each_environment_variable() -> None:
    text = EXAMPLE.read_text()
    for names in config.ENVIRONMENT.values():
        for name in names:
            assert f"env: {name}" in text or f", {name}" in text or f"then {name}" in text


# -- the server's time limits --------------------------------------------------

BOUNDS = {
    "header_timeout_s": "NTORQUE_HEADER_TIMEOUT",
    "body_timeout_s": "NTORQUE_BODY_TIMEOUT",
    "idle_timeout_s": "NTORQUE_IDLE_TIMEOUT",
}


@pytest.mark.parametrize(("key", "name"), BOUNDS.items())
def test_slow_client_bounds_come_from_the_environment(key: str, name: str) -> None:
    assert 10 <= getattr(config.Settings(), key) <= 120  # tens of seconds, not an hour
    assert getattr(config.load(environ={name: "2.5"}), key) == 2.5


@pytest.mark.parametrize("key", BOUNDS)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_slow_client_bounds_must_be_positive(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=BOUNDS[key]):
        config.load(environ={BOUNDS[key]: value})


# -- processes ---------------------------------------------------------------------

SHARED = {"DATABASE_URL": "postgresql://u@h/q", "REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(("raw", "expected"), [("2", 2), ("0", 0), ("16", 16)])
def test_several_processes_on_postgresql_and_redis(raw: str, expected: int) -> None:
    assert config.load(environ={**SHARED, "NTORQUE_PROCESSES": raw}).processes == expected


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_several_processes_need_postgresql_and_redis(missing: str) -> None:
    environ = {**SHARED, "NTORQUE_PROCESSES": "0"}
    del environ[missing]
    with pytest.raises(ConfigError, match=r"^NTORQUE_PROCESSES: 0 needs PostgreSQL and Redis"):
        config.load(environ=environ)


def test_several_processes_refuse_development_mode(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "processes: 2\nmode: development\n")
    with pytest.raises(ConfigError, match=r"processes \(in .*\): 2 cannot run in development"):
        config.load(path, environ=SHARED)


def test_processes_from_the_command_line(tmp_path: Path) -> None:
    settings = config.load(environ={**SHARED, "NTORQUE_PROCESSES": "4"}, overrides={"processes": 2})
    assert settings.processes == 2


@pytest.mark.parametrize("token", ["short", "has a space in it here", "t" * 201])
def test_a_bad_metrics_token_fails_without_showing_it(token: str) -> None:
    with pytest.raises(ConfigError) as error:
        config.load(None, {"NTORQUE_METRICS_TOKEN": token})
    assert "NTORQUE_METRICS_TOKEN" in error.value.message
    assert token not in error.value.message
