"""The exception types a user sees.

Every error that comes from the user's input (a file, a checkpoint, a
command-line value) is a :class:`SegstudioError`. The CLI prints it as one
line, ``<file>: <problem>``, and exits non-zero; the studio shows it in one
dialog. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class SegstudioError(Exception):
    """Base of the user-facing errors.

    Parameters
    ----------
    problem:
        What is wrong, in words a user understands.
    path:
        The file or folder the problem is about, if any.
    """

    def __init__(self, problem: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path is None:
            return self.problem
        return f"{self.path}: {self.problem}"


class InvalidArgumentError(SegstudioError, ValueError):
    """A value given by the user (model name, size, option) is not valid."""


class UnreadableInputError(SegstudioError):
    """An input file or folder cannot be read as what it should be."""


class CheckpointError(SegstudioError):
    """A checkpoint file is missing, broken or unsafe to load."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint was made for another architecture, class count or input."""


class DataError(SegstudioError):
    """A data set does not have the expected layout or content."""


class ExportError(SegstudioError):
    """A mask or file cannot be written."""


class InferenceError(SegstudioError):
    """Inference cannot go on (e.g. out of memory even at the smallest tile)."""
