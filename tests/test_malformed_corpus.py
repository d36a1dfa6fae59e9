"""Every reader and command meets a corpus of malformed files of every kind.

Each bad file must give one line naming it, the command a non-zero exit and
no traceback, and the good files beside it must be done. The corpus is made
here, small: truncated, empty, renamed and crafted images; NIfTI headers with
impossible dimensions and types, and one declaring 4096 x 4096 x 256 voxels;
DICOM files with text where numbers belong and a Modality LUT shorter than
it says; label files that are damaged or declare more than memory; a
checkpoint whose metadata is damaged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.io.project import Project
from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from tests.io.test_dicom import ct_copy, pydicom_file, set_raw
from tests.io.test_images import png_declaring, sparse_tiff
from tests.io.test_nifti import crafted_nifti

ROOT = Path(__file__).resolve().parents[1]
GOOD_IMAGES = ("good_a.png", "good_b.tif")


def _images(folder: Path) -> dict[str, str]:
    """Good and bad 2-D images; returns bad file name -> a word its line must hold."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / GOOD_IMAGES[0]), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / GOOD_IMAGES[1]), rng.integers(0, 65535, (36, 30), dtype=np.uint16))
    good = (folder / GOOD_IMAGES[0]).read_bytes()
    bad = {
        "empty.png": b"",
        "truncated.png": good[: len(good) // 2],
        "text.jpg": b"this is not a JPEG\n",
        "bomb.tif": sparse_tiff(100000, 100000),
        "long.tif": sparse_tiff(1, 4294967295),
        "rgba16.png": png_declaring(60000, 60000, depth=16),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return {name: "" for name in bad}


def _volumes(folder: Path) -> dict[str, str]:
    """Good and bad NIfTI and DICOM files in one folder."""
    folder.mkdir(parents=True)
    crafted_nifti(folder / "good.nii")
    crafted_nifti(folder / "negative.nii", dims=(3, -4, 3, 2))
    crafted_nifti(folder / "dim9.nii", dims=(9, 4, 3, 2))
    crafted_nifti(folder / "type9999.nii.gz", datatype=9999)
    crafted_nifti(folder / "bomb.nii.gz", dims=(3, 4096, 4096, 256))
    return {"negative.nii": "", "dim9.nii": "", "type9999.nii.gz": "", "bomb.nii.gz": "4096"}


def _dicom(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    ct_copy(folder / "slope.dcm", lambda ds: set_raw(ds, "RescaleSlope", "abc"))

    lut = pydicom.dcmread(pydicom_file("mlut_18.dcm"))  # a real file with a Modality LUT, made short
    item = lut.ModalityLUTSequence[0]
    item["LUTData"].VR = "OW"
    item.LUTData = np.arange(100, dtype="<u2").tobytes()
    lut.save_as(folder / "lut.dcm")
    (folder / "empty.dcm").write_bytes(b"")
    return {"slope.dcm": "RescaleSlope", "lut.dcm": "LUT"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = get_model("unet", num_classes=2, in_channels=3, base_width=4, depth=2, padding="same")
    return save_checkpoint(folder / "model.safetensors", model, make_meta(model))


def _segstudio(*args, limit: str = "2G") -> subprocess.CompletedProcess:
    env = dict(os.environ, SEGSTUDIO_MEMORY_LIMIT=limit, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "segstudio", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def _one_line_each(stderr: str, folder: Path, bad: dict[str, str]) -> None:
    assert "Traceback" not in stderr, stderr
    for name, word in bad.items():
        lines = [line for line in stderr.splitlines() if str(folder / name) in line]
        assert len(lines) == 1, f"{name}: {lines}\n{stderr}"
        assert word in lines[0], lines[0]


def test_predict_on_a_folder_of_bad_images(tmp_path, checkpoint):
    folder = tmp_path / "images"
    bad = _images(folder)
    out = tmp_path / "out"
    done = _segstudio("predict", folder, "--checkpoint", checkpoint, "--out", out, "--device", "cpu")
    assert done.returncode == 1
    _one_line_each(done.stderr, folder, bad)
    assert sorted(p.name for p in out.iterdir()) == ["good_a.png", "good_b.png"]


def test_predict_on_a_folder_of_bad_volumes(tmp_path, checkpoint):
    folder = tmp_path / "volumes"
    bad = _volumes(folder)
    out = tmp_path / "out"
    done = _segstudio("predict", folder, "--checkpoint", checkpoint, "--out", out, "--device", "cpu")
    assert done.returncode == 1
    _one_line_each(done.stderr, folder, bad)
    assert sorted(p.name for p in out.iterdir()) == ["good.ctbl", "good.label.txt", "good.nii.gz"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
@pytest.mark.parametrize("name", ["slope.dcm", "lut.dcm"])
def test_predict_on_bad_dicom_files(tmp_path, checkpoint, name):
    folder = tmp_path / "dicom"
    bad = _dicom(folder)
    done = _segstudio("predict", folder / name, "--checkpoint", checkpoint, "--out", tmp_path / "out",
                      "--device", "cpu")
    assert done.returncode != 0
    _one_line_each(done.stderr, folder, {name: bad[name]})


def test_export_of_a_project_with_bad_label_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c", "d"):
        cv2.imwrite(str(images / f"{name}.png"), np.full((20, 24), 50, np.uint8))
    project = Project.create(tmp_path / "project", [images], ClassList.from_names(["bg", "fg"]))
    for index in range(4):
        doc = project.load_document(index)
        doc.labels[:5] = 1
        project.save_document(index, doc)
    labels = project.labels_folder
    (labels / "b.png").write_bytes(b"damaged")
    (labels / "c.png").write_bytes(png_declaring(70000, 70000, colour=3))
    out = tmp_path / "out"
    done = _segstudio("export", project.folder, "--out", out)
    assert done.returncode == 1
    _one_line_each(done.stderr, labels, {"b.png": "", "c.png": "70000"})
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "d.png"]


@pytest.mark.parametrize("change", [
    lambda meta: meta.update(num_classes="3"),
    lambda meta: meta.update(base_width=1000000),
    lambda meta: meta.update(class_names=None),
    lambda meta: meta.update(format_version="1"),
])
def test_predict_with_a_damaged_checkpoint(tmp_path, checkpoint, change):
    from tests.models.test_checkpoint_hostile import _edit_metadata

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(checkpoint.read_bytes())
    _edit_metadata(bad, change)
    folder = tmp_path / "images"
    _images(folder)
    done = _segstudio("predict", folder / GOOD_IMAGES[0], "--checkpoint", bad, "--out", tmp_path / "out")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if str(bad) in line]
    assert len(lines) == 1, done.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_open_a_folder_of_bad_volumes_opens_the_good_one(tmp_path):
    """Damaged headers are left out; the bomb is listed (its header reads) but refused when shown."""
    folder = tmp_path / "volumes"
    bad = _volumes(folder)
    done = _segstudio("open", folder, "--exit-after-open")
    assert done.returncode == 0, done.stderr
    assert "opened 2 image(s)" in done.stdout
    assert "read NIfTI good.nii" in done.stderr
    _one_line_each(done.stderr, folder, bad)


def test_open_a_folder_of_bad_images_lists_them_and_shows_a_good_one(tmp_path):
    """Bad images stay in the list (selecting one says why it cannot be shown)."""
    folder = tmp_path / "images"
    _images(folder)
    done = _segstudio("open", folder, "--exit-after-open")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0 and "opened 8 image(s)" in done.stdout
