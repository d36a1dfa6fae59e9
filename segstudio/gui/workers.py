"""Core generators run off the GUI thread.

A task is a core generator (rule 2 of the design): it yields
:class:`~segstudio.tasks.Progress`, checks a :class:`CancelToken` and returns
its result. :func:`start_task` runs one in superqt's ``GeneratorWorker`` on
the global thread pool; progress, the result, errors and cancellation come
back to the GUI thread as Qt signals, so handlers may touch widgets.

The factory may be a generator function or any callable that returns a
generator (``lambda cancel: export_project(..., cancel=cancel)``): superqt
accepts only generator functions, so the latter is wrapped in one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import GeneratorWorker

from segstudio.tasks import CancelToken, Progress, TaskCancelled

log = logging.getLogger(__name__)

TaskFactory = Callable[[CancelToken], Generator[Progress, None, Any]]


def _as_generator_function(name: str, factory: TaskFactory) -> TaskFactory:
    """*factory* itself when it is a generator function, else a generator
    function that delegates to the generator *factory* returns.

    superqt's ``GeneratorWorker`` checks ``inspect.isgeneratorfunction``, which
    a lambda or ``functools.partial`` returning a generator fails. ``yield from``
    passes ``send`` and the return value through, so quitting still works. A
    factory that returns no generator fails in the worker, through ``failed``.
    """
    if inspect.isgeneratorfunction(factory):
        return factory

    def run(token: CancelToken) -> Generator[Progress, None, Any]:
        steps = factory(token)
        if not inspect.isgenerator(steps):
            raise TypeError(f"{name}: the task must return a generator, not {type(steps).__name__}")
        return (yield from steps)

    return run


class RunningTask(QObject):
    """Handle on a task in flight.

    Exactly one of ``succeeded``, ``failed`` or ``cancelled`` is emitted,
    then ``done``.
    """

    progressed = Signal(object)  # Progress
    succeeded = Signal(object)  # the task's return value
    failed = Signal(object)  # the exception
    cancelled = Signal()
    done = Signal()

    def __init__(self, name: str, factory: TaskFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self._finished = False
        self.worker = GeneratorWorker(_as_generator_function(name, factory), self.token)
        self.worker.yielded.connect(self._on_yielded)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)

    @property
    def running(self) -> bool:
        return not self._finished

    def start(self) -> RunningTask:
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the task to stop at its next check (within one tile / step)."""
        self.token.cancel()

    def _on_yielded(self, progress: object) -> None:
        if isinstance(progress, Progress):
            self.progressed.emit(progress)

    def _on_returned(self, result: object) -> None:
        if self.token.cancelled:
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)

    def _on_errored(self, error: BaseException) -> None:
        if isinstance(error, TaskCancelled):
            self.cancelled.emit()
            return
        log.error("%s failed: %s", self.name, error, exc_info=(type(error), error, error.__traceback__))
        self.failed.emit(error)

    def _on_aborted(self) -> None:
        self.cancelled.emit()

    def _on_finished(self) -> None:
        self._finished = True
        self.done.emit()


def start_task(name: str, factory: TaskFactory, parent: QObject | None = None) -> RunningTask:
    """Run ``factory(cancel_token)`` (a core generator) in a worker thread.

    *factory* is a generator function or a callable returning a generator.
    """
    return RunningTask(name, factory, parent).start()
