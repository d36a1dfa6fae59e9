"""``segstudio predict`` with models of more than 254 classes: 16-bit label maps."""

from __future__ import annotations

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from segstudio import cli
from segstudio.inference import Predictor
from segstudio.inference.volume import predict_volume_steps
from segstudio.io.dicom import read_series
from segstudio.io.images import read_image
from segstudio.io.masks import read_mask
from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from segstudio.tasks import run_to_completion
from tests.io.test_dicom import make_ct_series


def _checkpoint(path, num_classes, in_channels=3):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=num_classes, in_channels=in_channels, base_width=4, depth=2,
                      padding="same")
    meta = make_meta(model, class_names=[f"class {i}" for i in range(num_classes)])
    return save_checkpoint(path, model, meta)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "images" / "tissue.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    return path


def _predict(*args):
    return cli.main(["predict", *map(str, args), "--device", "cpu", "--precision", "fp32"])


def _expected_labels(checkpoint, image):
    predictor, _ = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32", tile_size=512)
    return predictor.predict(read_image(image)).labels


def test_300_classes_write_16_bit_pngs_holding_the_predicted_classes(tmp_path, image):
    checkpoint = _checkpoint(tmp_path / "wide.safetensors", 300)
    out = tmp_path / "out"
    assert _predict(image, "--checkpoint", checkpoint, "--out", out, "--save-probs") == 0
    with Image.open(out / "tissue.png") as png:
        assert png.mode.startswith("I;16") and png.size == (50, 40)
    written = read_mask(out / "tissue.png")
    expected = _expected_labels(checkpoint, image)
    assert written.dtype == expected.dtype == np.uint16
    np.testing.assert_array_equal(written, expected)
    assert written.max() > 255 and written.min() < 255  # classes on both sides of the 8-bit limit
    probabilities = np.load(out / "tissue.probs.npz")["probabilities"]
    assert probabilities.shape == (300, 40, 50)


def test_255_classes_already_need_16_bit(tmp_path, image):
    # The predictor gives uint8 for 255 channels; a 255-class project keeps uint16 maps.
    checkpoint = _checkpoint(tmp_path / "w255.safetensors", 255)
    out = tmp_path / "out"
    assert _predict(image, "--checkpoint", checkpoint, "--out", out) == 0
    written = read_mask(out / "tissue.png")
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, _expected_labels(checkpoint, image).astype(np.uint16))


def test_254_classes_stay_indexed_8_bit(tmp_path, image):
    checkpoint = _checkpoint(tmp_path / "w254.safetensors", 254)
    out = tmp_path / "out"
    assert _predict(image, "--checkpoint", checkpoint, "--out", out) == 0
    with Image.open(out / "tissue.png") as png:
        assert png.mode == "P"
    written = read_mask(out / "tissue.png")
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, _expected_labels(checkpoint, image))


def test_300_class_volume_to_nifti_and_png_slices(tmp_path):
    series = tmp_path / "ct"
    make_ct_series(series, z_offsets=(0.0, 5.0, 10.0))
    checkpoint = _checkpoint(tmp_path / "grey.safetensors", 300, in_channels=1)
    predictor, _ = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32", tile_size=128)
    volume = read_series(series)
    expected = run_to_completion(predict_volume_steps(predictor, volume.array)).labels
    assert expected.dtype == np.uint16 and expected.max() > 255

    out = tmp_path / "out"
    assert _predict(series, "--checkpoint", checkpoint, "--out", out, "--tile", "128") == 0
    data = np.asanyarray(nib.load(out / "ct.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(data, expected.astype(np.int64) + 1)  # NIfTI: class i as i + 1, 0 unlabelled
    assert data.dtype == np.uint16

    assert _predict(series, "--checkpoint", checkpoint, "--out", out, "--tile", "128", "--format", "png") == 0
    for k in range(3):
        written = read_mask(out / "ct" / f"slice_{k:04d}.png")
        assert written.dtype == np.uint16
        np.testing.assert_array_equal(written, expected[k])
