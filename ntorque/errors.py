"""ntorque's exceptions. Each class's docstring is its default message."""

from __future__ import annotations


class NtorqueError(Exception):
    """ntorque failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(NtorqueError):
    """The configuration is invalid."""


class InvalidRequest(NtorqueError):
    """The request is invalid."""

    status = 400

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the input at fault, where one is


class InvalidBatch(InvalidRequest):
    """Some items of the batch are invalid; nothing was stored."""

    def __init__(self, errors: list[dict[str, object]]) -> None:
        super().__init__()
        self.errors = errors  # [{"index", "field", "error"}]


class Conflict(NtorqueError):
    """The resource's state forbids this."""

    status = 409


class KeyReused(NtorqueError):
    """This Idempotency-Key was used for a request with another url, method or body."""

    status = 422
    field = "idempotency_key"

    def __init__(self, index: int = 0, message: str | None = None) -> None:
        super().__init__(message)
        self.index = index  # which of a batch's tasks


class PayloadTooLarge(InvalidRequest):
    """The request body is too large."""

    status = 413


class StorageUnavailable(NtorqueError):
    """The database is unavailable; nothing was stored. Try again later."""

    status = 503


class NotMigrated(NtorqueError):
    """The database schema is not up to date: run `python -m ntorque migrate`
    (or start with --migrate)."""


class UnknownApplication(NtorqueError):
    """No such application."""
