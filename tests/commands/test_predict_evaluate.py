"""``segstudio predict`` and ``segstudio evaluate`` end to end on files."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segstudio import cli
from segstudio.io.masks import read_mask, write_indexed_png
from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint

COLORS = [(0, 0, 0), (0, 200, 0), (40, 80, 255)]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, padding="same")
    meta = make_meta(model, class_names=["background", "cell", "nucleus"], class_colors=COLORS)
    return save_checkpoint(tmp_path / "model.safetensors", model, meta)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"a": (70, 90), "b": (64, 64), "c": (33, 101)}
    for stem, (h, w) in sizes.items():
        cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder, sizes


def test_predict_writes_indexed_masks_and_reports_the_bad_file(tmp_path, checkpoint, image_folder, caplog):
    folder, sizes = image_folder
    out = tmp_path / "out"
    code = cli.main(["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(out),
                     "--device", "cpu", "--save-probs"])
    assert code == 1  # one input failed
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    for stem, (h, w) in sizes.items():
        with Image.open(out / f"{stem}.png") as mask:
            assert mask.mode == "P" and mask.size == (w, h)
            palette = mask.getpalette()[:9]
        assert palette == [v for c in COLORS for v in c]
        labels = read_mask(out / f"{stem}.png")
        assert labels.max() <= 2
        probs = np.load(out / f"{stem}.probs.npz")
        assert probs["probabilities"].shape == (3, h, w)
        assert list(probs["class_names"]) == ["background", "cell", "nucleus"]
        assert np.array_equal(probs["probabilities"].argmax(0), labels) or (
            (probs["probabilities"].argmax(0) == labels).mean() > 0.99
        )
    assert not (out / "broken.png").exists()


def test_predict_with_crf_on_good_files_exits_zero(tmp_path, checkpoint, image_folder):
    folder, sizes = image_folder
    out = tmp_path / "crf"
    code = cli.main(["predict", str(folder / "a.png"), str(folder / "b.png"), "--checkpoint", str(checkpoint),
                     "--out", str(out), "--crf", "--device", "cpu", "--precision", "fp32"])
    assert code == 0
    assert read_mask(out / "a.png").shape == sizes["a"]


def test_predict_crf_backends_give_the_same_masks(tmp_path, checkpoint, image_folder, monkeypatch):
    """--crf-backend torch runs the PyTorch CRF (on --device), pydensecrf the reference: same labels."""
    import segstudio.refine

    folder, sizes = image_folder
    backends = []
    real_refine = segstudio.refine.refine

    def refine_spy(image, probabilities, *args, **kwargs):
        backends.append((kwargs.get("backend"), kwargs.get("device")))
        return real_refine(image, probabilities, *args, **kwargs)

    monkeypatch.setattr(segstudio.refine, "refine", refine_spy)
    masks = {}
    for backend in ("pydensecrf", "torch"):
        out = tmp_path / backend
        assert cli.main(["predict", str(folder / "a.png"), "--checkpoint", str(checkpoint), "--out", str(out),
                         "--crf", "--crf-backend", backend, "--device", "cpu", "--precision", "fp32"]) == 0
        masks[backend] = read_mask(out / "a.png")
    assert backends == [("pydensecrf", "cpu"), ("torch", "cpu")]
    assert masks["torch"].shape == sizes["a"]
    assert (masks["torch"] == masks["pydensecrf"]).mean() >= 0.99


def test_predict_without_weights_says_what_to_give(tmp_path, image_folder, capsys):
    folder, _ = image_folder
    assert cli.main(["predict", str(folder), "--model", "unet", "--out", str(tmp_path / "o")]) == 1
    assert "give --checkpoint FILE" in capsys.readouterr().err


def test_predict_refuses_a_model_name_that_does_not_match(tmp_path, checkpoint, image_folder, capsys):
    folder, _ = image_folder
    code = cli.main(["predict", str(folder), "--model", "fcn8s", "--checkpoint", str(checkpoint),
                     "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 1
    assert "holds a 'unet' model" in capsys.readouterr().err


def test_predict_on_a_missing_input(tmp_path, checkpoint, capsys):
    code = cli.main(["predict", str(tmp_path / "nowhere"), "--checkpoint", str(checkpoint),
                     "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_evaluate_scores_masks_against_ground_truth(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    truth = np.zeros((10, 10), np.uint8)
    truth[:, 5:] = 1
    truth[0, :] = 255  # ignored row
    guess = np.zeros((10, 10), np.uint8)
    guess[:, 4:] = 1
    write_indexed_png(gt / "x.png", truth, COLORS[:2])
    write_indexed_png(pred / "x.png", guess, COLORS[:2])
    assert cli.main(["evaluate", str(pred), str(gt), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    # rows 1-9: class 0 truth 45 px, predicted 36 (all correct); class 1 truth 45, predicted 54
    assert scores["images"] == 1
    assert scores["iou"] == pytest.approx([36 / 45, 45 / 54])
    assert scores["pixel_accuracy"] == pytest.approx(81 / 90)
    assert cli.main(["evaluate", str(pred), str(gt)]) == 0
    table = capsys.readouterr().out
    assert "0.8" in table


def test_evaluate_with_no_matching_names(tmp_path, capsys):
    write_indexed_png(tmp_path / "pred" / "a.png", np.zeros((4, 4), np.uint8), COLORS)
    write_indexed_png(tmp_path / "gt" / "b.png", np.zeros((4, 4), np.uint8), COLORS)
    assert cli.main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 1
    assert "no predicted mask has a ground-truth mask" in capsys.readouterr().err


def test_predict_into_the_input_folder_never_writes_over_a_source(checkpoint, image_folder, capsys):
    folder, _ = image_folder
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    code = cli.main(["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(folder),
                     "--device", "cpu"])
    assert code != 0
    err = capsys.readouterr().err
    assert "source images are never written" in err and "Traceback" not in err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
