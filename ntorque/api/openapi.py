"""GET /openapi.json: the API's OpenAPI 3.1 document, with this server's
bounds. No key: it describes the API, and holds nothing of any application's."""

from __future__ import annotations

import functools
import json

from ..openapi import Bounds, document
from .base import JsonHandler


@functools.cache
def document_text(bounds: Bounds) -> str:
    """The same for every request: built once per process."""
    return json.dumps(document(bounds))


class OpenApiHandler(JsonHandler):
    def get(self) -> None:
        options = self.api_options
        bounds = Bounds(
            max_retries=options.limits.max_retries,
            max_timeout_s=options.max_timeout_s,
            max_schedule_ahead_s=options.limits.max_schedule_ahead_s,
        )
        self.finish(document_text(bounds))
