"""Window / level: the DICOM LINEAR function and the CT presets."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from segstudio.errors import InvalidArgumentError
from segstudio.windowing import (
    CT_BONE,
    CT_BRAIN,
    CT_LUNG,
    CT_PRESETS,
    CT_SOFT_TISSUE,
    apply_window,
    default_window,
    invert_grey,
    mr_percentile_window,
    preset,
    window_bounds,
    window_from_dicom,
)


def reference_linear(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.2.1 written out branch by branch, output range 0..255."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 255.0
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0


def test_preset_values():
    assert (CT_SOFT_TISSUE.center, CT_SOFT_TISSUE.width) == (40, 400)
    assert (CT_LUNG.center, CT_LUNG.width) == (-600, 1500)
    assert (CT_BRAIN.center, CT_BRAIN.width) == (40, 80)
    assert (CT_BONE.center, CT_BONE.width) == (400, 1800)
    assert [p.name for p in CT_PRESETS] == ["Soft tissue", "Lung", "Bone", "Brain"]
    assert preset("lung") is CT_LUNG
    with pytest.raises(InvalidArgumentError, match="unknown window preset"):
        preset("liver")


def test_soft_tissue_known_values():
    hu = np.array([-1000, -161, -160, -159, 40, 239, 240, 1000], dtype=np.int16)
    grey = apply_window(hu, CT_SOFT_TISSUE.center, CT_SOFT_TISSUE.width)
    assert grey.dtype == np.uint8
    assert grey[:3].tolist() == [0, 0, 0]  # HU <= -160 is black
    assert grey[3] == 1
    assert grey[4] == 128  # the level sits at mid-grey: (0.5 / 399 + 0.5) * 255 = 127.8
    assert grey[5] == 255 and grey[6:].tolist() == [255, 255]  # HU >= 240 (in fact > 239) is white


@pytest.mark.parametrize("window", [CT_SOFT_TISSUE, CT_LUNG, CT_BONE, CT_BRAIN])
def test_presets_follow_the_formula(window):
    lower, upper = window_bounds(window.center, window.width)
    xs = np.array([lower - 1, lower, lower + 0.5, window.center, upper - 0.5, upper, upper + 0.01, upper + 1])
    expected = np.rint([reference_linear(x, window.center, window.width) for x in xs])
    np.testing.assert_array_equal(apply_window(xs, window.center, window.width), expected)
    assert apply_window(np.array([lower]), window.center, window.width)[0] == 0
    assert apply_window(np.array([upper + 1e-6]), window.center, window.width)[0] == 255


def test_lung_and_bone_grey_levels():
    assert apply_window(np.array([-1350.5]), -600, 1500)[0] == 0
    assert apply_window(np.array([-600]), -600, 1500)[0] == 128
    assert apply_window(np.array([150]), -600, 1500)[0] == 255
    assert apply_window(np.array([-500.5]), 400, 1800)[0] == 0
    assert apply_window(np.array([1300]), 400, 1800)[0] == 255


def test_width_one_is_a_threshold_and_below_one_is_refused():
    out = apply_window(np.array([9.0, 9.5, 9.6, 10.0, 11.0]), 10, 1)
    assert out.tolist() == [0, 0, 255, 255, 255]  # bound: x <= c - 0.5
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        apply_window(np.zeros(3), 0, 0.5)
    with pytest.raises(InvalidArgumentError):
        apply_window(np.zeros(3), float("nan"), 100)


def test_shape_kept_and_nan_black():
    volume = np.full((2, 3, 4), 40.0, np.float32)
    volume[0, 0, 0] = np.nan
    out = apply_window(volume, 40, 400)
    assert out.shape == volume.shape
    assert out[0, 0, 0] == 0 and out[1, 2, 3] == 128


def test_mr_percentile_window_maps_percentiles_to_black_and_white():
    rng = np.random.default_rng(0)
    image = rng.normal(300, 50, size=(64, 64)).astype(np.float32)
    center, width = mr_percentile_window(image, 1, 99)
    lo, hi = np.percentile(image, [1, 99])
    grey = apply_window(np.array([lo, hi, (lo + hi) / 2, lo - 5, hi + 5]), center, width)
    assert grey.tolist() == [0, 255, 128, 0, 255]
    # small float ranges work too (the -0.5 / w - 1 terms do not distort them)
    c2, w2 = mr_percentile_window(np.linspace(0, 1, 1001), 0, 100)
    assert apply_window(np.array([0.0, 0.25, 1.0]), c2, w2).tolist() == [0, 64, 255]
    with pytest.raises(InvalidArgumentError):
        mr_percentile_window(image, 60, 40)


def test_window_from_dicom():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    stored = window_from_dicom(ds)  # MR_small stores one window
    assert (stored.name, stored.center, stored.width) == ("DICOM", float(ds.WindowCenter), float(ds.WindowWidth))
    del ds.WindowCenter
    assert window_from_dicom(ds) is None
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [400, 1800]
    ds.WindowCenterWidthExplanation = ["SOFT", "BONE"]
    window = window_from_dicom(ds)
    assert (window.name, window.center, window.width) == ("SOFT", 40.0, 400.0)
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    del ds.WindowCenterWidthExplanation
    window = window_from_dicom(ds)
    assert (window.name, window.center, window.width) == ("DICOM", -600.0, 1500.0)
    ds.WindowWidth = "0"
    assert window_from_dicom(ds) is None


def test_window_from_enhanced_frame_voi(tmp_path):
    import gzip
    import os

    import nibabel

    source = os.path.join(os.path.dirname(nibabel.__file__), "nicom", "tests", "data", "philips_mprage.dcm.gz")
    with gzip.open(source) as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
    voi = ds.PerFrameFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    window = window_from_dicom(ds)
    assert window is not None
    assert window.center == pytest.approx(float(voi.WindowCenter))
    assert window.width == pytest.approx(float(voi.WindowWidth))


# ---------------------------------------------------------------- MONOCHROME1


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_monochrome1_radiograph_is_windowed_then_inverted():
    """A real CR file (MONOCHROME1): its own window, then low values white."""
    from segstudio.io.dicom import read_series

    volume = read_series(get_testdata_file("77654033/CR1/6154", download=False))
    assert volume.invert
    values = volume.array[0]
    center, width = default_window(volume)
    assert (center, width) == (1600.0, 2800.0)  # WindowCenter / WindowWidth of the file
    shown = apply_window(values, center, width, invert=True)
    expected = 255 - np.rint([reference_linear(float(x), center, width) for x in values.ravel()])
    np.testing.assert_array_equal(shown.ravel(), expected)
    # under a window spanning exactly the stored range, the lowest value is white and the highest black
    lo, hi = float(values.min()), float(values.max())
    full = (lo + (hi - lo + 1) / 2, hi - lo + 1)
    shown = apply_window(values, *full, invert=True)
    assert shown[values == lo].tolist() == [255] and shown[values == hi].tolist() == [0]
    assert (apply_window(values, *full) == 255 - shown).all()


def test_invert_keeps_nan_at_the_window_s_lowest_output_and_needs_uint8():
    out = apply_window(np.array([np.nan, -2000.0, 40.0, 3000.0]), 40, 400, invert=True)
    assert out.dtype == np.uint8 and out.tolist() == [255, 255, 127, 0]
    assert invert_grey(np.array([0, 1, 254, 255], np.uint8)).tolist() == [255, 254, 1, 0]
    with pytest.raises(InvalidArgumentError, match="uint8"):
        invert_grey(np.array([0, 1000], np.uint16))
