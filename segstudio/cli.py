"""The ``segstudio`` command: the studio window and the headless verbs.

``segstudio`` alone opens the studio; ``segstudio open PATH`` opens it on a
folder of images, image files or a project.

User errors (:class:`segstudio.errors.SegstudioError`) are printed as one
line, ``segstudio: error: <file>: <problem>``, with exit status 1; they never
dump a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from segstudio import __version__
from segstudio.errors import SegstudioError

log = logging.getLogger("segstudio")

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]


def _format_count(count: int) -> str:
    return f"{count:,}"


def cmd_models(args: argparse.Namespace) -> int:
    """Print the registered models with their parameter counts."""
    from segstudio.models import describe_models

    reports = describe_models()
    if args.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
        return EXIT_OK
    header = ("model", "learned params", "fixed params", "stride", "classes/in", "good at")
    rows = [
        (
            r.name,
            _format_count(r.params_learned),
            _format_count(r.params_fixed),
            str(r.output_stride),
            f"{r.args['num_classes']}/{r.args['in_channels']}",
            r.summary,
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    right = {1, 2, 3}
    for row in (header, *rows):
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=False))]
        sys.stdout.write("  ".join(cells) + "  " + row[-1] + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segstudio",
        description="Model-assisted semantic segmentation: networks, dense CRF, correction and fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"segstudio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list the segmentation networks and their sizes")
    models.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    models.set_defaults(run=cmd_models)

    open_cmd = commands.add_parser("open", help="open the studio on a folder of images, image files or a project")
    open_cmd.add_argument("paths", nargs="+", metavar="PATH")
    open_cmd.add_argument("--exit-after-open", action="store_true",
                          help="quit once the paths are open (exit status 0 if they opened): a smoke test")
    open_cmd.set_defaults(run=cmd_open)

    demo = commands.add_parser(
        "demo", help="open the studio on a copy of the bundled sample project with the demo model"
    )
    demo.add_argument("--fresh", action="store_true", help="start the demo project over (discard its edits)")
    demo.add_argument("--no-window", action="store_true", help="only prepare the project and print its folder")
    demo.set_defaults(run=cmd_demo)

    from segstudio import commands as verbs

    verbs.add_engine_commands(commands)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    """Prepare the demo project (in the user data directory) and open it."""
    from segstudio.demo import prepare_demo

    if not args.no_window:
        from segstudio.gui.app import display_problem

        problem = display_problem()
        if problem:
            raise SegstudioError(problem)
    project = prepare_demo(fresh=args.fresh)
    if args.no_window:
        sys.stdout.write(f"{project.folder}\n")
        return EXIT_OK
    from segstudio.gui.app import main as studio

    return studio([str(project.folder)])


def cmd_open(args: argparse.Namespace) -> int:
    """Start the studio window (with no command: an empty studio)."""
    from segstudio.gui.app import main as studio

    return studio(getattr(args, "paths", ()), exit_after_open=getattr(args, "exit_after_open", False))


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segstudio`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    run: Command = getattr(args, "run", cmd_open)
    try:
        return run(args)
    except SegstudioError as exc:
        sys.stderr.write(f"segstudio: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("segstudio: interrupted\n")
        return EXIT_INTERRUPTED
