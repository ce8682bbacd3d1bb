"""Settings: defaults < YAML file < environment < command line, resolved once.

Only `__main__` calls `load()`; everything else takes plain arguments. A bad
value stops the start with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .targets import Rules

ROLES = ("all", "web", "worker")
BACKOFFS = ("exponential", "linear")
MODES = ("production", "development")
LOG_FORMATS = ("text", "json")
POOL_CLASSES = ("", "QueuePool", "NullPool")
# The original nTorque documents SQLALCHEMY_POOL_CLASS=sqlalchemy.pool.NullPool:
# dotted names mean the same classes (the asyncio engine's queue pool is the
# QueuePool of an async engine).
POOL_CLASS_NAMES = {"AsyncAdaptedQueuePool": "QueuePool"}
POOL_MODULES = ("sqlalchemy.pool.impl.", "sqlalchemy.pool.")
# A bearer token as a scraper sends it in a header: visible ASCII, long enough to guess badly.
METRICS_TOKEN = re.compile(r"[\x21-\x7e]{16,200}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8888
    role: str = "all"
    processes: int = 1  # processes of this node sharing its port; 0 = one per core
    database_url: str = "sqlite:///ntorque.db"
    redis_url: str = ""
    redis_channel: str = "ntorque"
    concurrency: int = 50
    backoff: str = "exponential"
    default_timeout_s: int = 60
    min_due_delay_s: float = 2.0
    max_due_delay_s: float = 7200.0
    max_retries: int = 36
    transient_codes: tuple[int, ...] = (408, 423, 429, 449)
    requeue_interval_s: float = 5.0
    requeue_batch: int = 1000
    max_schedule_ahead_s: float = 30 * 86400.0  # how far ahead delay= and eta= may reach
    idempotency_window_s: float = 86400.0  # how long an Idempotency-Key names its task
    cleanup_after_days: float = 7.0
    cleanup_interval_s: float = 7200.0
    cleanup_batch: int = 500
    authenticate: bool = True
    auth_cache_s: float = 5.0
    enable_hsts: bool = False
    hsts_protocol_header: str = ""
    cookie_secret: str = ""  # signs console logins; empty = made once, kept in the database
    metrics_token: str = ""  # GET /metrics wants it as a bearer token; empty: open
    auth_failure_limit: int = 20
    auth_failure_window_s: float = 60.0
    trust_proxy_headers: bool = False
    certfile: str = ""
    keyfile: str = ""
    max_body_bytes: int = 1024 * 1024
    header_timeout_s: float = 20.0  # a new connection sends its request's headers within
    body_timeout_s: float = 60.0  # a request's body arrives within, once its headers are in
    idle_timeout_s: float = 60.0  # a kept-alive connection sends its next request's headers within
    ca_certs: str = ""
    allow_private_targets: bool = True
    target_allow: tuple[str, ...] = ()
    target_deny: tuple[str, ...] = ()
    shutdown_grace_s: float = 30.0
    db_timeout_s: float = 5.0
    pool_size: int = 10
    max_overflow: int = 10
    pool_recycle_s: float = 3600.0
    pool_class: str = ""
    mode: str = "production"
    log_format: str = "text"  # or "json": one JSON object per line

    @property
    def development(self) -> bool:
        return self.mode == "development"


# Environment variable names per field; the first one set wins.
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "host": ("NTORQUE_HOST",),
    "port": ("NTORQUE_PORT", "PORT"),
    "role": ("NTORQUE_ROLE",),
    "processes": ("NTORQUE_PROCESSES",),
    "database_url": ("DATABASE_URL",),
    "redis_url": ("REDIS_URL",),
    "redis_channel": ("NTORQUE_REDIS_CHANNEL",),
    "concurrency": ("NTORQUE_CONCURRENCY",),
    "backoff": ("NTORQUE_BACKOFF",),
    "default_timeout_s": ("NTORQUE_DEFAULT_TIMEOUT",),
    "min_due_delay_s": ("NTORQUE_MIN_DUE_DELAY",),
    "max_due_delay_s": ("NTORQUE_MAX_DUE_DELAY",),
    "max_retries": ("NTORQUE_MAX_RETRIES",),
    "transient_codes": ("NTORQUE_TRANSIENT_REQUEST_ERRORS",),
    "requeue_interval_s": ("NTORQUE_REQUEUE_INTERVAL",),
    "requeue_batch": ("NTORQUE_REQUEUE_BATCH",),
    "max_schedule_ahead_s": ("NTORQUE_MAX_SCHEDULE_AHEAD",),
    "idempotency_window_s": ("NTORQUE_IDEMPOTENCY_WINDOW",),
    "cleanup_after_days": ("NTORQUE_CLEANUP_AFTER_DAYS",),
    "cleanup_interval_s": ("NTORQUE_CLEANUP_INTERVAL",),
    "cleanup_batch": ("NTORQUE_CLEANUP_BATCH",),
    "authenticate": ("NTORQUE_AUTHENTICATE",),
    "auth_cache_s": ("NTORQUE_AUTH_CACHE",),
    "enable_hsts": ("NTORQUE_ENABLE_HSTS",),
    "hsts_protocol_header": ("HSTS_PROTOCOL_HEADER",),
    "cookie_secret": ("NTORQUE_COOKIE_SECRET",),
    "metrics_token": ("NTORQUE_METRICS_TOKEN",),
    "auth_failure_limit": ("NTORQUE_AUTH_FAILURE_LIMIT",),
    "auth_failure_window_s": ("NTORQUE_AUTH_FAILURE_WINDOW",),
    "trust_proxy_headers": ("NTORQUE_TRUST_PROXY_HEADERS",),
    "certfile": ("NTORQUE_CERTFILE",),
    "keyfile": ("NTORQUE_KEYFILE",),
    "max_body_bytes": ("NTORQUE_MAX_BODY_SIZE",),
    "header_timeout_s": ("NTORQUE_HEADER_TIMEOUT",),
    "body_timeout_s": ("NTORQUE_BODY_TIMEOUT",),
    "idle_timeout_s": ("NTORQUE_IDLE_TIMEOUT",),
    "ca_certs": ("NTORQUE_CA_CERTS",),
    "allow_private_targets": ("NTORQUE_ALLOW_PRIVATE_TARGETS",),
    "target_allow": ("NTORQUE_TARGET_ALLOW",),
    "target_deny": ("NTORQUE_TARGET_DENY",),
    "shutdown_grace_s": ("NTORQUE_SHUTDOWN_GRACE",),
    "db_timeout_s": ("NTORQUE_DB_TIMEOUT",),
    "pool_size": ("SQLALCHEMY_POOL_SIZE",),
    "max_overflow": ("SQLALCHEMY_MAX_OVERFLOW",),
    "pool_recycle_s": ("SQLALCHEMY_POOL_RECYCLE",),
    "pool_class": ("SQLALCHEMY_POOL_CLASS",),
    "mode": ("MODE",),
    "log_format": ("NTORQUE_LOG_FORMAT",),
}


def load(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings; raise ConfigError naming the first bad key."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("NTORQUE_CONFIG") or None
    raw: dict[str, tuple[str, Any]] = {}
    for key, value in _read_yaml(path).items():
        raw[key] = (f"{key} (in {path})", value)
    for key, names in ENVIRONMENT.items():
        for name in names:
            if environ.get(name, "") != "":
                raw[key] = (name, environ[name])
                break
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = (f"--{key.replace('_', '-')}", value)
    settings = Settings(**{key: _convert(key, label, value) for key, (label, value) in raw.items()})
    _check(settings, {key: label for key, (label, _) in raw.items()})
    return settings


def _read_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read configuration file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys to values")
    known = {field.name for field in fields(Settings)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {path}")
    return data


def _convert(key: str, label: str, value: Any) -> Any:
    kind = _FIELD_TYPES[key]
    try:
        return _CONVERTERS[kind](value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{label}: {value!r} is not a valid {kind}") from error


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):  # "nan" or "inf" would stall every due-date comparison
        raise ValueError(value)
    return number


def _to_pool_class(value: Any) -> str:
    """A pool class as written (NullPool, sqlalchemy.pool.NullPool ...), by its short name."""
    name = "" if value is None else str(value).strip()
    for module in POOL_MODULES:
        name = name.removeprefix(module)
    return POOL_CLASS_NAMES.get(name, name)


def _to_codes(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list | tuple) else str(value).replace(" ", ",").split(",")
    return tuple(sorted({_to_int(item) for item in items if str(item).strip()}))


def _to_strings(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": lambda value: "" if value is None else str(value),
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "tuple[int, ...]": _to_codes,
    "tuple[str, ...]": _to_strings,
}
_FIELD_TYPES = {field.name: str(field.type) for field in fields(Settings)}
_FIELD_TYPES["pool_class"] = "pool class"
_CONVERTERS["pool class"] = _to_pool_class


def _check(settings: Settings, labels: Mapping[str, str]) -> None:
    """Reject values that are well-typed but make no sense together."""

    def fail(key: str, why: str) -> None:
        label = labels.get(key, key)
        raise ConfigError(f"{label}: {getattr(settings, key)!r} {why}")

    choices = {
        "role": ROLES, "backoff": BACKOFFS, "mode": MODES, "pool_class": POOL_CLASSES,
        "log_format": LOG_FORMATS,
    }  # fmt: skip
    for key, allowed in choices.items():
        if getattr(settings, key) not in allowed:
            fail(key, f"must be one of {', '.join(repr(a) for a in allowed)}")
    positive = (
        "port", "concurrency", "default_timeout_s", "min_due_delay_s", "max_due_delay_s",
        "max_retries", "requeue_interval_s", "requeue_batch", "cleanup_after_days",
        "cleanup_interval_s", "cleanup_batch", "max_body_bytes", "db_timeout_s", "pool_size",
        "auth_failure_window_s", "header_timeout_s", "body_timeout_s", "idle_timeout_s",
        "max_schedule_ahead_s", "idempotency_window_s",
    )  # fmt: skip
    for key in positive:
        if getattr(settings, key) <= 0:
            fail(key, "must be greater than zero")
    for key in (
        "auth_cache_s", "shutdown_grace_s", "max_overflow", "auth_failure_limit", "processes",
    ):  # fmt: skip
        if getattr(settings, key) < 0:
            fail(key, "must not be negative")
    if settings.port > 65535:
        fail("port", "is not a TCP port")
    if settings.metrics_token and not METRICS_TOKEN.fullmatch(settings.metrics_token):
        # Not quoted back: it is a secret.
        label = labels.get("metrics_token", "metrics_token")
        raise ConfigError(f"{label}: must be 16 to 200 visible characters, without spaces")
    _check_relations(settings, fail)


def _check_relations(settings: Settings, fail: Callable[[str, str], None]) -> None:
    if settings.max_due_delay_s <= settings.default_timeout_s:
        fail("max_due_delay_s", "must be longer than the default timeout (default_timeout_s)")
    if any(code < 100 or code > 599 for code in settings.transient_codes):
        fail("transient_codes", "must be HTTP status codes (100-599)")
    if not settings.database_url.startswith(("sqlite", "postgres")):
        fail("database_url", "must be a sqlite:// or postgresql:// url")
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        fail("redis_url", "must be a redis:// url")
    _check_processes(settings, fail)
    if 0 < len(settings.cookie_secret) < 16:
        fail("cookie_secret", "must have at least 16 characters")
    for key in ("target_allow", "target_deny"):
        try:
            Rules.parse(getattr(settings, key))
        except ValueError as error:
            fail(key, f"is not valid: {error}")


def _check_processes(settings: Settings, fail: Callable[[str, str], None]) -> None:
    """Several processes need what several nodes need: on SQLite every process
    would lead maintenance, and an in-process channel reaches only its own."""
    if settings.processes == 1:
        return
    if not settings.database_url.startswith("postgres") or not settings.redis_url:
        fail(
            "processes",
            "needs PostgreSQL and Redis (database_url and redis_url): "
            "the embedded SQLite file and in-process channel serve one process",
        )
    if settings.development:
        fail("processes", "cannot run in development mode: autoreload restarts one process")


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of settings with changes (for tests and the command line)."""
    return dataclasses.replace(settings, **changes)
