"""Training samples from a project: the corrected images and their saved labels.

The studio trains on the images a person has corrected or reviewed. This
module turns a :class:`~segstudio.io.project.Project` into the ``(image,
labels)`` samples of :mod:`segstudio.training`, and into
:class:`SampleSource` path pairs that are cheap to send to a training
process (which then loads the pixels itself with :func:`load_sources`, so the
window's process never pickles large arrays).

Labels mark unlabelled pixels with the largest value of their type (255 in
a uint8 map, 65535 in the uint16 maps of projects with more than 254
classes), which the loss ignores; an image whose labels are all unlabelled
teaches nothing and is skipped. A file that cannot be read
is skipped too, with an error naming it, so one bad file never stops a run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.annotation.document import ImageStatus
from segstudio.errors import DataError, InvalidArgumentError, SegstudioError, UnreadableInputError
from segstudio.io.images import read_image
from segstudio.io.masks import read_mask, unlabelled_of
from segstudio.io.project import Project
from segstudio.training.data import Sample, split_train_val

log = logging.getLogger(__name__)

#: the review states whose labels a person has vouched for
TRAINABLE_STATUSES = (ImageStatus.CORRECTED, ImageStatus.REVIEWED)


@dataclass(frozen=True)
class SampleSource:
    """Where one training example lives on disk.

    Attributes
    ----------
    stem:
        The image's name in the project (its entry id, normally the file
        stem); versions record these.
    image:
        The image file.
    labels:
        The label PNG (class index per pixel; 255 = unlabelled in an 8-bit
        file, 65535 in a 16-bit one).
    """

    stem: str
    image: Path
    labels: Path
    #: for a volume: the axial slice, and the entry's selector (series, 4-D index)
    slice_index: int | None = None
    selector: tuple[tuple[str, Any], ...] | None = None
    #: for a whole slide: the level-0 box of one labelled region (``image`` is the slide,
    #: ``labels`` its chunked label store)
    region: tuple[tuple[int, int], tuple[int, int]] | None = None


@dataclass
class LoadedSources:
    """What :func:`load_sources` read, and what it had to skip."""

    samples: list[Sample] = field(default_factory=list)
    #: the stem of each sample, in the same order
    stems: list[str] = field(default_factory=list)
    #: one error per skipped source, naming the file
    skipped: list[SegstudioError] = field(default_factory=list)


def sources_from_project(project: Project, indices: Iterable[int] | None = None) -> list[SampleSource]:
    """The image/label file pairs of a project to train on.

    Parameters
    ----------
    project:
        The open project.
    indices:
        Image indices to use; ``None`` takes every image whose status is
        corrected or reviewed, and the labelled regions of the project's
        whole slides (:func:`slide_sources`).

    Raises
    ------
    InvalidArgumentError
        An index is out of range.
    """
    if indices is None:
        chosen = [i for i, e in enumerate(project.entries) if e.status in TRAINABLE_STATUSES]
    else:
        chosen = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int | np.integer) \
                    or not 0 <= index < len(project.entries):
                raise InvalidArgumentError(f"no image with index {index} (the project has {len(project.entries)})")
            chosen.append(int(index))
    sources = []
    for i in chosen:
        entry = project.entries[i]
        if getattr(entry, "kind", "image") == "volume":
            sources.extend(_annotated_slices(entry))
        else:
            sources.append(SampleSource(entry.id, entry.source, entry.labels_path))
    if indices is None:
        sources.extend(slide_sources(project.folder))
    return sources


def slide_sources(project_folder: Path) -> list[SampleSource]:
    """One source per labelled region of each whole slide annotated in the project
    (``slides/*/``, as the studio's slide window keeps them), named
    ``<slide file>@Y0,Y1,X0,X1``. A slide whose file is gone is left out with a warning."""
    import json

    from segstudio.annotation.slide_document import LABELS, SLIDE_FILE
    from segstudio.io.tiled_labels import TiledLabels
    from segstudio.training.slide_data import labelled_regions, region_name

    sources = []
    root = Path(project_folder) / "slides"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        store = folder / LABELS
        if not (store / ".zarray").is_file() or not (folder / SLIDE_FILE).is_file():
            continue
        try:
            slide = Path(json.loads((folder / SLIDE_FILE).read_text(encoding="utf-8"))["slide"])
            regions = labelled_regions(TiledLabels.open(store))
        except (OSError, ValueError, KeyError, TypeError, SegstudioError) as exc:
            log.warning("leaving the slide labels in %s out of training: %s", folder, exc)
            continue
        if regions and not slide.is_file():
            log.warning("leaving the labels of %s out of training: the slide file is gone", slide)
            continue
        sources.extend(SampleSource(f"{slide.name}@{region_name(box)}", slide, store, region=box)
                       for box in regions)
    return sources


def _annotated_slices(entry) -> list[SampleSource]:
    """One source per axial slice of a volume that has any label."""
    from segstudio.io.project_volumes import read_label_volume

    if not Path(entry.labels_path).is_file():
        return []
    labels = read_label_volume(entry.labels_path)
    selector = tuple(sorted((entry.selector or {}).items())) or None
    labelled = np.flatnonzero((labels != unlabelled_of(labels)).any(axis=(1, 2)))
    return [SampleSource(f"{entry.id}#z{k}", entry.source, entry.labels_path, int(k), selector) for k in labelled]


@lru_cache(maxsize=2)
def _read_volume(source: Path, selector: tuple[tuple[str, Any], ...] | None):
    """The source volume of a volume entry; cached, since a volume gives many training slices."""
    from segstudio.io.project_volumes import read_source_volume

    return read_source_volume(Path(source), dict(selector) if selector else None)


@lru_cache(maxsize=4)
def _volume_map(source: Path, selector: tuple[tuple[str, Any], ...] | None, preprocessing_key: tuple):
    """The intensity map of a whole volume under a model's preprocessing: the
    same map inference gives every slice (:func:`segstudio.preprocess.volume_intensity`)."""
    from segstudio.models.checkpoint import Preprocessing
    from segstudio.preprocess import volume_intensity
    from segstudio.windowing import default_window

    preprocessing = Preprocessing(*preprocessing_key)
    volume = _read_volume(source, selector)
    # checkpoints written before the normalisation was recorded trained on the
    # volume's own window (the file's, the CT preset or its percentiles)
    view = default_window(volume) if preprocessing.normalization == "dtype" else None
    return volume_intensity(volume.array, preprocessing, view_window=view, invert=volume.invert)


def _volume_slice(source: SampleSource, preprocessing) -> np.ndarray:
    """One axial slice of a volume, carrying its volume's intensity map."""
    from segstudio.models.checkpoint import Preprocessing
    from segstudio.preprocess import MappedImage

    preprocessing = preprocessing or Preprocessing()
    key = tuple(getattr(preprocessing, f.name) for f in fields(preprocessing))
    volume = _read_volume(Path(source.image), source.selector)
    intensity = _volume_map(Path(source.image), source.selector, key)
    return MappedImage(np.ascontiguousarray(volume.array[source.slice_index]), intensity)


@lru_cache(maxsize=4)
def _slide_map(slide_path: Path, mtime_ns: int, preprocessing_key: tuple):
    """A slide's intensity map under a model's preprocessing, fitted once for all its regions."""
    from segstudio.io.slide import Slide
    from segstudio.models.checkpoint import Preprocessing
    from segstudio.training.slide_data import slide_intensity

    with Slide(slide_path) as slide:
        return slide_intensity(slide, Preprocessing(*preprocessing_key))


def _slide_region(source: SampleSource, preprocessing) -> Sample:
    """A labelled region of a whole slide with its context, read alone (never the slide)."""
    from segstudio.io.slide import Slide
    from segstudio.io.tiled_labels import TiledLabels
    from segstudio.models.checkpoint import Preprocessing
    from segstudio.training.slide_data import check_shapes, region_sample

    preprocessing = preprocessing or Preprocessing()
    key = tuple(getattr(preprocessing, f.name) for f in fields(preprocessing))
    path = Path(source.image)
    try:
        intensity = _slide_map(path, path.stat().st_mtime_ns, key)
    except OSError as exc:
        raise UnreadableInputError(f"cannot read the slide: {exc.strerror or exc}", path=path) from exc
    store = TiledLabels.open(source.labels)
    with Slide(path) as slide:
        check_shapes(slide, store)
        sample = region_sample(slide, store, source.region, intensity)
    if sample is None:
        raise DataError("every pixel is unlabelled; there is nothing to learn from", path=source.labels)
    return sample


def load_source(source: SampleSource, num_classes: int | None = None, preprocessing=None) -> Sample:
    """Read one image and its labels and check that they make a usable sample.

    Parameters
    ----------
    source:
        The files.
    num_classes:
        When given, labels holding a class index of ``num_classes`` or more
        (other than the labels' unlabelled value) are refused.
    preprocessing:
        The model's :class:`~segstudio.models.checkpoint.Preprocessing`: a
        volume's slice comes back as a
        :class:`~segstudio.preprocess.MappedImage` carrying the map the
        model sees the whole volume through (the default rule when ``None``).

    Raises
    ------
    UnreadableInputError
        A file is missing or cannot be read.
    DataError
        The labels' size differs from the image's, every pixel is
        unlabelled, or a class index is out of range.
    """
    if source.region is not None:
        image, labels = _slide_region(source, preprocessing)
    elif not Path(source.labels).is_file():
        raise UnreadableInputError(f"image {source.stem!r} has no saved labels", path=source.labels)
    elif source.slice_index is not None:
        # a volume slice, mapped by its volume's statistics as inference maps it
        from segstudio.io.project_volumes import read_label_volume

        image = _volume_slice(source, preprocessing)
        labels = np.ascontiguousarray(read_label_volume(source.labels)[source.slice_index])
    else:
        image = read_image(source.image)
        labels = read_mask(source.labels)
    if labels.shape != image.shape[:2]:
        raise DataError(
            f"labels are {labels.shape[1]} x {labels.shape[0]} but the image is "
            f"{image.shape[1]} x {image.shape[0]}",
            path=source.labels,
        )
    unlabelled = unlabelled_of(labels)
    if not (labels != unlabelled).any():
        raise DataError("every pixel is unlabelled; there is nothing to learn from", path=source.labels)
    if num_classes is not None:
        present = np.unique(labels)
        bad = present[(present >= num_classes) & (present != unlabelled)]
        if bad.size:
            raise DataError(
                f"labels hold class(es) {bad[:10].tolist()} but there are only {num_classes} classes "
                f"(0..{num_classes - 1}; {unlabelled} = unlabelled)",
                path=source.labels,
            )
    return image, labels


def load_sources(
    sources: Sequence[SampleSource], num_classes: int | None = None, preprocessing=None
) -> LoadedSources:
    """Read many sources, skipping (and reporting) the ones that fail.

    Each skipped file gets one warning in the log and one error in
    :attr:`LoadedSources.skipped`; an empty result is not an error here (the
    caller decides whether it can train without samples).
    """
    loaded = LoadedSources()
    for source in sources:
        try:
            sample = load_source(source, num_classes, preprocessing)
        except (UnreadableInputError, DataError) as exc:
            log.warning("leaving %s out of training: %s", source.stem, exc)
            loaded.skipped.append(exc)
            continue
        loaded.samples.append(sample)
        loaded.stems.append(source.stem)
    return loaded


def samples_from_project(
    project: Project, indices: Iterable[int] | None = None
) -> tuple[list[Sample], list[str]]:
    """Load the samples of a project to train on.

    Parameters
    ----------
    project:
        The open project (its saved labels are read, not any unsaved edits).
    indices:
        Image indices to use; ``None`` takes every corrected or reviewed image.

    Returns
    -------
    (samples, used_stems)
        The ``(image, labels)`` pairs and the id of each image used. Images
        whose files cannot be read, whose labels do not fit, or whose labels
        are all unlabelled are left out with a warning.
    """
    loaded = load_sources(sources_from_project(project, indices), len(project.classes))
    return loaded.samples, loaded.stems


def split_for_validation(
    stems: Sequence[str],
    *,
    val_stems: Iterable[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Choose the validation images among the training candidates.

    Parameters
    ----------
    stems:
        The candidates' names, e.g. the ``used_stems`` of
        :func:`samples_from_project`.
    val_stems:
        The images the user picked for validation. Names not among
        ``stems`` are ignored with a warning. ``None`` holds out a share
        instead.
    val_fraction:
        The share held out when no list is given: the same stems, fraction
        and seed always give the same split.
    seed:
        Seeds the held-out choice.

    Returns
    -------
    (train_indices, val_indices)
        Positions in ``stems``, each list in the original order.

    Raises
    ------
    DataError
        The chosen validation images would leave nothing to train on.
    InvalidArgumentError
        ``val_fraction`` is outside ``[0, 1)``.
    """
    if val_stems is None:
        return split_train_val(list(range(len(stems))), val_fraction, seed)
    wanted = {str(s) for s in val_stems}
    unknown = sorted(wanted - set(stems))
    if unknown:
        log.warning(
            "%d validation image(s) are not among the usable images and are ignored: %s",
            len(unknown), ", ".join(unknown[:5]),
        )
    val = [i for i, s in enumerate(stems) if s in wanted]
    train = [i for i, s in enumerate(stems) if s not in wanted]
    if stems and not train:
        raise DataError("every usable image is set aside for validation; leave at least one for training")
    return train, val

