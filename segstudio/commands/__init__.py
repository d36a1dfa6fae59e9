"""The headless verbs of the ``segstudio`` command, one module each."""

from __future__ import annotations

import argparse


def add_engine_commands(commands: argparse._SubParsersAction) -> None:
    """Register the engine verbs (predict, train, evaluate) on the parser."""
