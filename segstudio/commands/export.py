"""``segstudio export``: a project's label maps as PNG masks, overlays, binary masks,
NIfTI label maps or DICOM SEG."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segstudio.commands.common import progress_bar
from segstudio.io.export import EXPORT_FORMATS

log = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a project's labels as masks, overlays, binary masks, pyramidal OME-TIFF, GeoJSON, NIfTI "
             "or DICOM SEG",
        description="Export every labelled image of a project folder. Formats: png (<stem>.png of class "
        "indices: an indexed PNG with the class palette, 255 = unlabelled, for projects of up to 254 classes; "
        "a 16-bit greyscale PNG, 65535 = unlabelled, for larger ones; for a volume a folder <id>/ of "
        "slice_0000.png ...), "
        "overlay (<stem>_overlay.png, image with the labels blended in), binary (<stem>_<class>.png, "
        "0/255, one per class present), nifti (<id>.nii.gz label map on the volume's grid, uint8 or uint16, "
        "unlabelled = 0), "
        "dicom-seg (<id>.seg.dcm referencing the source DICOM series). overlay and binary apply to "
        "2-D images, nifti and dicom-seg to volumes (dicom-seg to DICOM volumes); other entries and "
        "those without labels are skipped with a log line.",
    )
    parser.add_argument("project", type=Path, metavar="PROJECT", help="project folder (or its project.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the exported files")
    parser.add_argument("--format", dest="fmt", default="png",
                        choices=list(EXPORT_FORMATS),
                        help="what to write (default png)")
    parser.add_argument("--allow-uneven-spacing", action="store_true",
                        help="write NIfTI label maps even for DICOM series whose slices are not evenly spaced "
                        "(the file's single affine then misplaces some slices; DICOM SEG has no such limit)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from segstudio.io.export import export_project
    from segstudio.io.project import Project

    project = Project.open(args.project)
    task = export_project(project, args.out, fmt=args.fmt, allow_uneven_spacing=args.allow_uneven_spacing)
    with progress_bar(len(project.entries), "export", unit="image") as bar:
        while True:
            try:
                progress = next(task)
            except StopIteration as stop:
                written = stop.value
                break
            bar.n = progress.done
            bar.refresh()
    log.info("wrote %d file(s) to %s", len(written), args.out)
    return 0
