"""How long work reports progress and stops.

Long work is a generator: it yields :class:`Progress`, checks a
:class:`CancelToken` at every yield and *returns* its result. The CLI drives
it with a progress bar, the studio in a worker thread, tests synchronously
with :func:`run_to_completion`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class TaskCancelled(Exception):
    """Raised inside a task when its :class:`CancelToken` was cancelled."""


@dataclass(frozen=True)
class Progress:
    """One step of a long task.

    ``done`` of ``total`` units are finished (``total`` is ``None`` when it is
    not known). ``metrics`` carries numbers worth showing, such as a loss.
    """

    done: int
    total: int | None
    message: str = ""
    stage: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


class CancelToken:
    """A thread-safe flag a task checks between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise TaskCancelled("cancelled by the user")


Task = Generator[Progress, None, T]


def run_to_completion(task: Task[T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Drive a task generator to its end and return its result."""
    while True:
        try:
            progress = next(task)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(progress)
