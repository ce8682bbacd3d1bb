"""In-process publish/subscribe of task changes (for live views).

Subscribers are plain callables; one that raises is dropped, so a broken
listener can never stall the dispatch path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .tasks import Task

log = logging.getLogger(__name__)

Listener = Callable[[Task], None]


class Events:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, task: Task) -> None:
        for listener in list(self._listeners):
            try:
                listener(task)
            except Exception:
                log.exception("task %s event listener failed and was removed", task.id)
                self.unsubscribe(listener)
