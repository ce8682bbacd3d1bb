"""The OpenAPI 3.1 document of the JSON API, built as data from the
server's own bounds and served at GET /openapi.json. tests/test_openapi.py
checks that it names every route of api.routes(), that it validates, and
runs schemathesis against a live node from it.

Inputs are described as closely as JSON Schema can say what the handlers
accept; what it cannot say (a target policy, a cron expression's meaning, a
cursor's contents) is named by a `format` and told in the description.
Where the API wants a whole number it wants one written without a point: 2,
not 2.0 (which JSON Schema's "integer" admits).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .parts import Bounds, errors_component
from .paths import other_paths, queue_paths, schedule_paths, task_paths
from .schemas import schemas

__all__ = ["Bounds", "document"]


def document(bounds: Bounds | None = None) -> dict[str, Any]:
    """The whole document (a new dict on each call), for these bounds."""
    bounds = bounds or Bounds()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ntorque",
            "version": __version__,
            "description": "A self-hosted web-hook task queue. Every error answer is "
            '{"status", "error"} (plus "field" or "errors" where one input is at fault).',
        },
        "paths": {
            **other_paths(bounds),
            **task_paths(bounds),
            **queue_paths(),
            **schedule_paths(),
        },
        "components": {
            "schemas": schemas(bounds),
            "responses": errors_component(),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "NTORQUE_API_KEY"},
                "MetricsToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
