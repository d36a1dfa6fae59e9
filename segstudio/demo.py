"""The demo project: the bundled sample, ready to run, correct and train.

``segstudio demo`` copies the sample images into the per-user data
directory (never into the installed package), makes a project with the
sample's classes, marks the training split as corrected (their labels are
the sample's ground truth, so Train has something to learn from) and makes
the demo model active.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import ImageStatus
from segstudio.io.masks import read_mask
from segstudio.io.project import PROJECT_FILE, Project
from segstudio.resources import DEMO_MODEL, SAMPLE, resource_path

log = logging.getLogger(__name__)


def demo_folder() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("segstudio", appauthor=False)) / "demo"


def prepare_demo(folder: Path | None = None, *, fresh: bool = False) -> Project:
    """Create (or reopen) the demo project and return it."""
    folder = Path(folder) if folder is not None else demo_folder()
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if (folder / PROJECT_FILE).is_file():
        return Project.open(folder)
    sample = resource_path(*SAMPLE)
    info = json.loads((sample / "classes.json").read_text(encoding="utf-8"))
    classes = ClassList.from_list([{"name": c["name"], "color": c["color"]} for c in info["classes"]])
    images = folder / "images"
    shutil.copytree(sample / "images", images, dirs_exist_ok=True)
    model = folder / "models" / DEMO_MODEL[-1]
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(resource_path(*DEMO_MODEL), model)
    project = Project.create(folder, sorted(images.glob("*.png")), classes)
    train = set(info.get("split", {}).get("train", []))
    for index, entry in enumerate(project.entries):
        if entry.source.stem in train:
            document = project.load_document(index)
            document.labels[...] = read_mask(sample / "masks" / f"{entry.source.stem}.png")
            document.status = ImageStatus.CORRECTED
            project.save_document(index, document)
    project.model_settings.update(architecture="unet", checkpoint=str(model), device="auto", precision="auto",
                                  tile=512)
    project.current = next((i for i, e in enumerate(project.entries) if e.source.stem not in train), 0)
    project.save()
    log.info("demo project ready in %s", folder)
    return project
