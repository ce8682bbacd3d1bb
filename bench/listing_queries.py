"""The listing statements `python -m bench listing` EXPLAINs, for one set of
filters: a page of GET /tasks ("page") and a batch of a bulk cancel or
retry ("ids").

Written out after the contract (notes/spec12.md: newest first, keyset
`id < cursor`, LIMIT limit + 1 to know whether a next page exists; url_prefix
as LIKE 'escaped prefix%'), until the store's own listing statement exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FILTERS = ("status", "url_prefix", "created_after", "created_before")
KINDS = ("page", "ids")  # GET /tasks; a batch of POST /tasks/cancel or /tasks/retry
BULK_BATCH = 500


@dataclass(frozen=True)
class Listing:
    """One page of GET /tasks: a scope (None = an admin: every application), filters, a cursor."""

    app_id: int | None
    status: str | None = None
    url_prefix: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    cursor: int | None = None  # the last id of the previous page
    limit: int = 100


def like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class Statements:
    """The statements for a listing (the same interface as the store's, once it exists)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def statement(self, kind: str, listing: Listing) -> tuple[str, list[Any]]:
        return statement(kind, listing)

    async def close(self) -> None:
        pass


def statement(kind: str, listing: Listing) -> tuple[str, list[Any]]:
    """The SQL (asyncpg's $n placeholders) and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []

    def where(condition: str, value: Any) -> None:
        params.append(value)
        conditions.append(condition.format(f"${len(params)}"))

    if listing.app_id is not None:
        where("app_id = {}", listing.app_id)
    if listing.status is not None:
        where("status = {}", listing.status)
    if listing.url_prefix is not None:
        where("url LIKE {}", like_prefix(listing.url_prefix))
    if listing.created_after is not None:
        where("created >= {}", listing.created_after)
    if listing.created_before is not None:
        where("created < {}", listing.created_before)
    if listing.cursor is not None:
        where("id < {}", listing.cursor)
    filtered = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    params.append(listing.limit + 1 if kind == "page" else BULK_BATCH)
    columns = "*" if kind == "page" else "id"
    return f"SELECT {columns} FROM tasks{filtered} ORDER BY id DESC LIMIT ${len(params)}", params
