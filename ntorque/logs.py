"""How log lines look: the readable text (the default), or one JSON object
per line (log_format: json) for a log collector.

A record about a task carries its fields as `extra=task_fields(...)`: the
text lines show them in the message as before; the JSON lines give each its
own key, so a collector can filter on task_id or code without parsing text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .tasks import Task

TEXT_FORMAT = "%(asctime)s %(levelname)s{who} %(name)s %(message)s"
# The extra fields a record may carry, in the order JSON lines show them.
TASK_FIELDS = ("task_id", "queue", "app", "attempt", "status", "code", "duration_s")


def task_fields(task: Task, **more: Any) -> dict[str, Any]:
    """A task's fields for a log record's `extra=`."""
    return {"task_id": task.id, "queue": task.queue, "app": task.app_id, **more}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, milliseconds), level, logger,
    event (the message), the task's fields where given, and an exception's
    traceback as one field (escaped newlines: still one line)."""

    def __init__(self, process: bool = False) -> None:
        super().__init__()
        self.process = process  # several processes share stderr: say whose line

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        if self.process:
            line["pid"] = record.process
        line |= {name: getattr(record, name) for name in TASK_FIELDS if hasattr(record, name)}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def formatter(log_format: str, processes: int = 1) -> logging.Formatter:
    """The formatter of log_format ("text" or "json")."""
    several = processes != 1
    if log_format == "json":
        return JsonFormatter(process=several)
    return logging.Formatter(TEXT_FORMAT.format(who=" [%(process)d]" if several else ""))
