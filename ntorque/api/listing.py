"""The caller's tasks: listed newest first by keyset (GET /tasks), and
cancelled or retried in bulk by the same filters (POST /tasks/cancel|retry)."""

from __future__ import annotations

from typing import Any

from .. import selection
from ..errors import InvalidRequest
from .base import BodyHandler
from .enqueue import BatchHandler


class TasksHandler(BatchHandler):
    """GET /tasks lists; POST /tasks enqueues a batch."""

    async def get(self) -> None:  # type: ignore[override]  # the banner's get is sync
        await self.authenticate()
        query = self.raw_query()
        chosen = selection.task_filter(query, self.scope)
        limit = selection.limit(query.get("limit"))
        tasks = await self.queue.listing(
            chosen, limit + 1, selection.before_id(query.get("cursor"))
        )
        more = len(tasks) > limit
        page = tasks[:limit]
        self.send_json(
            200,
            {
                "tasks": [task.to_json() for task in page],
                "next_cursor": selection.cursor(page[-1].id) if more else None,
            },
        )


class BulkHandler(BodyHandler):
    """POST /tasks/cancel or /tasks/retry: every task the filters match (from
    the query string, or a JSON object body), in bounded batches."""

    async def post(self, action: str) -> None:
        values = self.filters()
        if paging := sorted(set(values) & set(selection.PAGING)):
            raise InvalidRequest("a bulk action takes filters, not limit or cursor", paging[0])
        chosen = selection.task_filter(values, self.scope)
        matched, changed = await self.queue.bulk(chosen, action)
        self.send_json(200, {"matched": matched, "changed": changed})

    def filters(self) -> dict[str, Any]:
        values: dict[str, Any] = self.raw_query()
        body = self.json_body()
        if body is None:
            return values
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object of filters")
        # One place per filter: the body's silently won over the query's.
        if twice := sorted(set(values) & set(body)):
            raise InvalidRequest(
                f"{twice[0][:40]} is in both the query and the body", twice[0][:40]
            )
        return {**values, **body}
