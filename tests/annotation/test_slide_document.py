"""A slide being annotated: strokes into tiled labels, one undo step per stroke, saving only dirty chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.annotation.slide_document import SlideDocument, slide_folder
from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.tiled_labels import TiledLabels
from segstudio.tasks import run_to_completion


@pytest.fixture
def slide_path(tmp_path):
    y, x = np.mgrid[0:3000, 0:2600]
    image = np.stack([(y * 3) % 251, (x * 5) % 241, (x + y) % 239], axis=2).astype(np.uint8)
    return run_to_completion(build_pyramid_steps(image, tmp_path / "big.ome.tif"))


def test_a_stroke_is_one_undo_step_that_keeps_only_the_boxes_it_crossed(tmp_path, slide_path) -> None:
    document = SlideDocument.open(slide_path, tmp_path / "labels")
    changes = []
    document.subscribe(changes.append)
    document.begin_stroke("brush")
    document.paint_segment((100, 100), (2900, 2500), 6, 1)  # a long diagonal over many chunks
    document.paint_segment((2900, 2500), (2900, 2550), 6, 1)
    assert document.end_stroke()
    labels = document.labels.read(((0, 3000), (0, 2600)))
    assert labels[100, 100] == 1 and labels[1500, 1300] == 1 and labels[2900, 2550] == 1
    assert labels[100, 2500] == 255 and (labels == 1).sum() > 2800 * 12
    edit = document.history._undo[-1]
    # per chunk only the crossed box: the chunks along the diagonal, not the 6 x 5 chunks of its bounding box
    assert 6 <= len(edit.parts) <= 16 and edit.nbytes <= 2 * 512 * 512 * len(edit.parts)
    assert edit.nbytes < 0.4 * 2 * 2800 * 2450
    assert len(changes) == 2
    box = document.undo()
    assert box == ((94, 2906), (94, 2556))
    assert (document.labels.read(((0, 3000), (0, 2600))) == 255).all()
    document.redo()
    np.testing.assert_array_equal(document.labels.read(((0, 3000), (0, 2600))), labels)
    document.close()


def test_saving_writes_only_the_chunks_a_stroke_touched_and_reopens(tmp_path, slide_path) -> None:
    folder = tmp_path / "labels"
    document = SlideDocument.open(slide_path, folder)
    document.begin_stroke("brush")
    document.paint_segment((700, 700), (700, 700), 10, 1)  # straddles the chunk corner at (512, 512)? no: inside
    document.paint_segment((1020, 1020), (1030, 1030), 8, 1)  # crosses the corner at (1024, 1024)
    document.end_stroke()
    assert document.labels.dirty == {(1, 1), (1, 2), (2, 1), (2, 2)}
    written = document.save()
    assert 0 < written < 4 * 2000 and not document.unsaved
    files = sorted(p.name for p in (folder / "labels").iterdir() if not p.name.startswith("."))
    assert files == ["1.1", "1.2", "2.1", "2.2"]
    document.close()
    again = SlideDocument.open(slide_path, folder)
    assert again.labels.read(((1020, 1021), (1020, 1021)))[0, 0] == 1
    assert json.loads((folder / "slide.json").read_text())["shape"] == [3000, 2600]
    again.close()


def test_unlabelled_only_and_the_eraser(tmp_path, slide_path) -> None:
    document = SlideDocument.open(slide_path, tmp_path / "l", ClassList.from_names(["a", "b", "c"]))
    document.begin_stroke("brush")
    document.paint_segment((50, 50), (50, 50), 5, 1)
    document.end_stroke()
    document.begin_stroke("brush")
    document.paint_segment((50, 56), (50, 56), 5, 2, unlabelled_only=True)
    document.end_stroke()
    assert document.labels.read(((50, 51), (50, 51)))[0, 0] == 1
    assert document.labels.read(((50, 51), (58, 59)))[0, 0] == 2
    document.begin_stroke("eraser")
    document.paint_segment((50, 40), (50, 70), 8, document.labels.unlabelled)
    document.end_stroke()
    assert (document.labels.read(((40, 60), (30, 80))) == 255).all()
    assert len(document.classes) == 3
    document.close()


def test_accepting_the_prediction_in_a_box_is_undoable(tmp_path, slide_path) -> None:
    folder = tmp_path / "l"
    document = SlideDocument.open(slide_path, folder)
    with pytest.raises(InvalidArgumentError, match="run the model first"):
        document.accept_prediction(((0, 10), (0, 10)))
    prediction = TiledLabels.create(folder / "prediction", document.shape)
    prediction.write(((0, 600), (0, 600)), np.ones((600, 600), np.uint8))
    prediction.flush()
    document.prediction = TiledLabels.open(folder / "prediction")
    assert document.accept_prediction(((500, 1000), (500, 1000))) == ((500, 1000), (500, 1000))
    labels = document.labels.read(((0, 1000), (0, 1000)))
    assert (labels[500:600, 500:600] == 1).all() and (labels[600:, :] == 255).all() and (labels[:500] == 255).all()
    document.undo()
    assert (document.labels.read(((0, 1000), (0, 1000))) == 255).all()
    document.close()


def test_labels_of_another_image_are_refused_by_name(tmp_path, slide_path) -> None:
    folder = tmp_path / "l"
    TiledLabels.create(folder / "labels", (10, 10))
    with pytest.raises(DataError, match="belong to another image"):
        SlideDocument.open(slide_path, folder)


def test_slide_folders_differ_for_equal_names_in_different_folders(tmp_path) -> None:
    a = slide_folder(tmp_path / "x" / "case.svs", tmp_path / "root")
    b = slide_folder(tmp_path / "y" / "case.svs", tmp_path / "root")
    assert a != b and a.name.startswith("case.svs-") and a.parent == tmp_path / "root"


def test_chunks_a_killed_write_left_half_done_are_removed_on_opening(tmp_path, slide_path) -> None:
    import os
    import time

    folder = tmp_path / "l"
    SlideDocument.open(slide_path, folder).close()
    stale, fresh = folder / "labels" / ".1.1.abc123.tmp", folder / "labels" / ".1.2.def456.tmp"
    for leftover in (stale, fresh):
        leftover.write_bytes(b"half a chunk")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    document = SlideDocument.open(slide_path, folder)
    assert not stale.exists() and fresh.exists()  # a fresh one may be another window's write in flight
    assert (document.labels.read(((512, 1024), (512, 1024))) == 255).all()
    document.close()
