"""Real, labelled data for the training benchmarks, and the scores they print.

Nothing here is downloaded:

* **ISBI 2012 EM** (``../shared/data/isbi2012-em``, or ``SEGSTUDIO_ISBI``):
  15 slices of 512 x 512 serial-section TEM of the Drosophila larva ventral
  nerve cord with expert labels (255 = cell interior, 0 = membrane), the
  data of the U-Net paper. Classes here: 0 = cell, 1 = membrane.
* **StarDist's nuclei image**, shipped inside the ``stardist`` package
  (``pip install stardist``; the files are read without importing it, so no
  TensorFlow is needed): ``data/images/img2d.tif``, a 512 x 512 16-bit
  fluorescence image of nuclei from the 2018 Data Science Bowl (values
  0..235), with its expert instance mask ``mask2d.tif``. Classes here:
  0 = background, 1 = nucleus.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISBI = Path(os.environ.get("SEGSTUDIO_ISBI", REPO.parent / "shared" / "data" / "isbi2012-em"))


def isbi_slices() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image uint8, labels uint8: 0 cell, 1 membrane)`` of every ISBI slice, in order."""
    from PIL import Image

    if not (ISBI / "images").is_dir():
        raise SystemExit(f"the ISBI 2012 EM data is not at {ISBI} (set SEGSTUDIO_ISBI)")
    slices = []
    for path in sorted((ISBI / "images").glob("*.png")):
        image = np.asarray(Image.open(path))
        truth = np.asarray(Image.open(ISBI / "labels" / path.name))
        slices.append((path.stem, image, (truth < 128).astype(np.uint8)))
    return slices


def stardist_nuclei() -> tuple[np.ndarray, np.ndarray] | None:
    """``(image uint16, labels uint8: 0 background, 1 nucleus)``, or ``None`` without stardist."""
    import tifffile

    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    image = tifffile.imread(folder / "img2d.tif")
    instances = tifffile.imread(folder / "mask2d.tif")
    return image, (instances > 0).astype(np.uint8)


def sparse_labels(truth: np.ndarray, nuclei: int = 15, ring: int = 8, seed: int = 0) -> np.ndarray:
    """What a person corrects first: a few whole nuclei and a ring of background
    around each; everything else unlabelled (255)."""
    from scipy import ndimage

    components, count = ndimage.label(truth)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.arange(1, count + 1), size=min(nuclei, count), replace=False)
    picked = np.isin(components, chosen)
    around = ndimage.binary_dilation(picked, iterations=ring)
    labels = np.full(truth.shape, 255, np.uint8)
    labels[around] = 0
    labels[picked] = 1
    # a ring must not claim another nucleus as background
    labels[(labels == 0) & (truth == 1)] = 255
    return labels


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of an array of any numeric type (256 bins over its range)."""
    values = np.asarray(values, np.float64).ravel()
    histogram, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(histogram)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(histogram * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between))])


def dice(prediction: np.ndarray, truth: np.ndarray, label: int = 1) -> float:
    """Dice of one class."""
    p, t = prediction == label, truth == label
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def mean_dice(prediction: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """Mean Dice over the classes present in the truth or the prediction."""
    scores = [dice(prediction, truth, c) for c in range(classes) if (truth == c).any() or (prediction == c).any()]
    return float(np.mean(scores))
