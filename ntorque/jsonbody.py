"""Pure: a request body's JSON (a batch, bulk filters), or InvalidRequest.

Bounded: nested at most MAX_DEPTH deep (deeper, Python's parser would run
out of stack: a RecursionError, not an answer). No lone surrogate in any
string or name (I-JSON, RFC 7493): neither the database nor an outgoing
call can carry one, so it is refused here, not met there.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidRequest

MAX_DEPTH = 32  # a batch needs 3 (array, task, headers)


def loads(body: bytes, invalid: str = "the body is not valid JSON") -> Any:
    """The body's JSON; InvalidRequest(invalid) when it does not parse."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise InvalidRequest(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(invalid) from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Depth and strings, walked without recursion (the value may be deep)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, list | dict):
            if depth >= MAX_DEPTH:
                raise InvalidRequest(f"the body is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((name, depth) for name in item)
                item = item.values()
            stack.extend((each, depth + 1) for each in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("the body holds a lone surrogate (\\ud800-\\udfff)") from None
