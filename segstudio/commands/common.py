"""Small pieces the headless verbs share: progress bars, class files."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segstudio.errors import DataError


def progress_bar(total: int | None, description: str, unit: str = "it") -> Any:
    """A tqdm bar on stderr; silent when stderr is not a terminal and CI logs
    would only fill with carriage returns."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None)


def read_classes_file(path: Path) -> dict[str, Any] | None:
    """``classes.json`` of a data folder: class names, colours, optional split."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        classes = data["classes"]
        names = [str(c["name"]) for c in classes]
        colors = [tuple(int(v) for v in c["color"]) for c in classes]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a valid classes file ({exc})", path=path) from None
    return {"names": names, "colors": colors, "split": data.get("split")}


def unique_output_names(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """Pair each input with an output stem; inputs that share a file stem
    (same name in two folders) get their folder's name prefixed."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    for path in paths:
        stem = path.stem if counts[path.stem] == 1 else f"{path.parent.name}_{path.stem}"
        yield path, stem


def add_crf_backend_option(parser, help_text: str) -> None:
    """``--crf-backend``, as ``predict`` and ``predict-slide`` take it."""
    parser.add_argument("--crf-backend", default="auto", choices=["auto", "pydensecrf", "torch"], help=help_text)


def crf_options(args) -> dict:
    """refine()'s ``backend`` and ``device`` from ``--crf-backend`` and ``--device``."""
    device = args.device if args.device == "cpu" or args.device.startswith("cuda") else None
    return {"backend": args.crf_backend, "device": device}
