"""Label tables written beside a NIfTI label map: which value is which class, in which colour.

A NIfTI file holds numbers only. Two small text files say what they mean:

* ``<name>.ctbl``: a 3D Slicer colour table (Colors module, "Color table
  file" format): ``value name R G B A`` per line, colours and opacity
  0..255, spaces in names replaced by underscores. Load it (Add Data) and
  choose it as the label map's colour table, or pass it as ``colorNodeID``.
* ``<name>.label.txt``: an ITK-SNAP label description file
  (Segmentation > Import Label Descriptions): ``IDX -R- -G- -B- -A-- VIS MSH
  "LABEL"`` per line, opacity 0..1.

Both list value 0 as "unlabelled" (transparent) and every class, not only
those present, so that files exported from one project read the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from segstudio.io.masks import atomic_write_bytes

UNLABELLED_NAME = "unlabelled"

# value, name, (r, g, b)
LabelEntry = tuple[int, str, tuple[int, int, int]]


def label_table_paths(nifti_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<name>.ctbl, <name>.label.txt)`` beside *nifti_path* (``<name>.nii`` or ``<name>.nii.gz``)."""
    path = Path(nifti_path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}.ctbl"), path.with_name(f"{name}.label.txt")


def slicer_color_table(entries: Sequence[LabelEntry], title: str = "") -> str:
    """The text of a 3D Slicer colour table (``.ctbl``) with value 0 unlabelled and transparent."""
    lines = [f"# Color table file {title}".rstrip(), f"# {len(entries) + 1} values",
             f"0 {UNLABELLED_NAME} 0 0 0 0"]
    for value, name, (r, g, b) in entries:
        token = "_".join(str(name).split()) or f"class_{value - 1}"
        lines.append(f"{value} {token} {int(r)} {int(g)} {int(b)} 255")
    return "\n".join(lines) + "\n"


def itksnap_label_description(entries: Sequence[LabelEntry]) -> str:
    """The text of an ITK-SNAP label description file with value 0 unlabelled and hidden."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        "# File format: ",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields: ",
        "#    IDX:   Zero-based index ",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description ",
        "################################################",
        f'{0:5d} {0:5d} {0:4d} {0:4d} {0:8g} {0:2d} {0:2d}    "{UNLABELLED_NAME}"',
    ]
    for value, name, (r, g, b) in entries:
        text = " ".join(str(name).replace('"', "'").split())
        lines.append(f'{value:5d} {int(r):5d} {int(g):4d} {int(b):4d} {1:8g} {1:2d} {1:2d}    "{text}"')
    return "\n".join(lines) + "\n"


def write_label_tables(nifti_path: str | os.PathLike[str], entries: Sequence[LabelEntry]) -> list[Path]:
    """Write the Slicer and ITK-SNAP tables for *entries* beside *nifti_path*, each atomically."""
    ctbl, itksnap = label_table_paths(nifti_path)
    return [
        atomic_write_bytes(ctbl, slicer_color_table(entries, ctbl.name).encode("utf-8")),
        atomic_write_bytes(itksnap, itksnap_label_description(entries).encode("utf-8")),
    ]
