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
