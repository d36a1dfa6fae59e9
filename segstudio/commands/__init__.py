"""The headless verbs of the ``segstudio`` command, one module each.

Each module has ``add_parser(commands)``, which registers its sub-command
with ``run(args) -> exit code`` as the handler. Heavy imports (torch) happen
inside ``run`` so that ``segstudio --help`` stays fast.
"""

from __future__ import annotations

import argparse

from segstudio.commands import evaluate, export, predict, slide, train


def add_engine_commands(commands: argparse._SubParsersAction) -> None:
    """Register the engine verbs (predict, train, evaluate, export, predict-slide, pyramid) on the parser."""
    for module in (predict, train, evaluate, export, slide):
        module.add_parser(commands)
