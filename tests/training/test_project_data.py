"""Training samples from a project: which images, which labels, which are skipped."""

import logging

import cv2
import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import ImageStatus
from segstudio.errors import DataError, InvalidArgumentError, UnreadableInputError
from segstudio.io.project import Project
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import MappedImage, volume_intensity, with_normalization
from segstudio.synthetic import CLASS_COLORS, CLASS_NAMES, generate_sample
from segstudio.training.project_data import (
    SampleSource,
    load_source,
    load_sources,
    samples_from_project,
    sources_from_project,
    split_for_validation,
)


def make_project(tmp_path, statuses):
    """A project with one 48 x 56 generated image per status; every image
    that is not NEW gets its true labels saved."""
    images = tmp_path / "images"
    images.mkdir()
    truths = {}
    for i in range(len(statuses)):
        image, mask = generate_sample(100 + i, 48, 56)
        cv2.imwrite(str(images / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        truths[f"img{i}"] = mask
    classes = ClassList.from_list([{"name": n, "color": list(c)} for n, c in zip(CLASS_NAMES, CLASS_COLORS)])
    project = Project.create(tmp_path / "project", [images], classes)
    for index, (entry, status) in enumerate(zip(project.entries, statuses, strict=True)):
        if status is ImageStatus.NEW:
            continue
        document = project.load_document(index)
        document.labels[...] = truths[entry.id]
        document.status = status
        project.save_document(index, document)
    return project, truths


def test_corrected_and_reviewed_images_are_used_with_their_saved_labels(tmp_path):
    statuses = [ImageStatus.CORRECTED, ImageStatus.NEW, ImageStatus.REVIEWED, ImageStatus.PREDICTED,
                ImageStatus.CORRECTED]
    project, truths = make_project(tmp_path, statuses)
    samples, stems = samples_from_project(project)
    assert stems == ["img0", "img2", "img4"]
    for (image, labels), stem in zip(samples, stems, strict=True):
        assert image.shape == (48, 56, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(labels, truths[stem])

    # explicit indices override the status filter, in the order given
    samples, stems = samples_from_project(project, [3, 0])
    assert stems == ["img3", "img0"]
    with pytest.raises(InvalidArgumentError, match="no image with index 9"):
        samples_from_project(project, [9])

    sources = sources_from_project(project)
    assert [s.stem for s in sources] == ["img0", "img2", "img4"]
    assert sources[0].labels == project.entries[0].labels_path and sources[0].image == project.entries[0].source


def test_unusable_images_are_skipped_with_an_error_naming_the_file(tmp_path, caplog):
    statuses = [ImageStatus.CORRECTED] * 5
    project, _ = make_project(tmp_path, statuses)
    # img1: every pixel unlabelled; img2: damaged label file; img3: class 7 of 3; img4: no label file
    document = project.load_document(1)
    document.labels[...] = 255
    project.save_document(1, document)
    project.entries[2].labels_path.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    document = project.load_document(3)
    document.labels[0, 0] = 7
    from segstudio.io.masks import write_indexed_png

    write_indexed_png(project.entries[3].labels_path, document.labels, [(0, 0, 0)] * 8)
    project.entries[4].labels_path.unlink()

    with caplog.at_level(logging.WARNING):
        samples, stems = samples_from_project(project)
    assert stems == ["img0"] and len(samples) == 1
    loaded = load_sources(sources_from_project(project), num_classes=3)
    assert len(loaded.skipped) == 4
    text = "\n".join(str(e) for e in loaded.skipped)
    assert "img1.png: every pixel is unlabelled" in text
    assert "img2.png" in text and "class(es) [7]" in text and "img4" in text
    assert "img2" in caplog.text

    with pytest.raises(UnreadableInputError, match="no saved labels"):
        load_source(sources_from_project(project, [4])[0])
    # without a class count, out-of-range classes are the loop's business
    image, labels = load_source(sources_from_project(project, [3])[0])
    assert labels[0, 0] == 7


def test_labels_of_another_size_are_refused(tmp_path):
    project, _ = make_project(tmp_path, [ImageStatus.CORRECTED])
    from segstudio.io.masks import write_indexed_png

    write_indexed_png(project.entries[0].labels_path, np.zeros((10, 10), np.uint8), CLASS_COLORS)
    source = SampleSource("img0", project.entries[0].source, project.entries[0].labels_path)
    with pytest.raises(DataError, match="labels are 10 x 10 but the image is 56 x 48"):
        load_source(source)


def test_split_honours_a_chosen_list_or_holds_out_a_share_deterministically(caplog):
    stems = [f"s{i}" for i in range(10)]
    train, val = split_for_validation(stems, val_stems=["s3", "s7", "ghost"])
    assert val == [3, 7] and train == [0, 1, 2, 4, 5, 6, 8, 9]
    assert "ghost" in caplog.text

    first = split_for_validation(stems, val_fraction=0.3, seed=5)
    again = split_for_validation(list(stems), val_fraction=0.3, seed=5)
    assert first == again
    train, val = first
    assert len(val) == 3 and sorted(train + val) == list(range(10))
    assert split_for_validation(stems, val_fraction=0.3, seed=6) != first

    # an empty chosen list means no validation; choosing everything is refused
    assert split_for_validation(stems, val_stems=[]) == (list(range(10)), [])
    with pytest.raises(DataError, match="leave at least one"):
        split_for_validation(stems, val_stems=stems)
    with pytest.raises(InvalidArgumentError):
        split_for_validation(stems, val_fraction=1.0)


def test_a_job_for_a_project_fine_tunes_its_active_version(tmp_path):
    from segstudio.models import get_model
    from segstudio.models.checkpoint import make_meta, save_checkpoint
    from segstudio.training import TrainConfig
    from segstudio.training.process import TrainJobSpec
    from segstudio.training.versions import VersionStore

    statuses = [ImageStatus.CORRECTED, ImageStatus.REVIEWED, ImageStatus.NEW, ImageStatus.CORRECTED,
                ImageStatus.CORRECTED]
    project, _ = make_project(tmp_path, statuses)
    store = VersionStore(project.folder)
    config = TrainConfig(epochs=1, device="cpu")
    with pytest.raises(InvalidArgumentError, match="no model version to fine-tune"):
        TrainJobSpec.for_project(project, store, config)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2)
    store.import_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, make_meta(model)))

    job = TrainJobSpec.for_project(project, store, config, val_stems=["img3"])
    assert [s.stem for s in job.train] == ["img0", "img1", "img4"] and [s.stem for s in job.val] == ["img3"]
    assert job.parent_id == "v0001" and job.base_checkpoint == store.checkpoint_path("v0001")
    assert job.config == config.to_dict() and job.out_dir.parent == project.folder / "models" / "runs"
    held_out = TrainJobSpec.for_project(project, store, config, val_fraction=0.25)
    assert len(held_out.val) == 1 and len(held_out.train) == 3
    assert TrainJobSpec.for_project(project, store, config, val_fraction=0.25).val == held_out.val

    runs_before = sorted((project.folder / "models" / "runs").iterdir())
    with pytest.raises(DataError, match="leave at least one"):
        TrainJobSpec.for_project(project, store, config, indices=[2], val_stems=["img2"])
    with pytest.raises(DataError, match="no training images"):
        TrainJobSpec.for_project(project, store, config, indices=[])
    assert sorted((project.folder / "models" / "runs").iterdir()) == runs_before


LEGACY = Preprocessing("RGB", (0.5,) * 3, (0.25,) * 3, normalization="dtype")


def test_annotated_volume_slices_become_training_samples_mapped_as_inference_maps_them(tmp_path):
    """Fine-tuning uses the annotated slices of a volume, each mapped by the whole volume as inference maps it."""
    from segstudio.io.project_opening import open_or_create
    from segstudio.training.project_data import load_source, sources_from_project
    from tests.io.test_dicom import make_ct_series

    make_ct_series(tmp_path / "ct")
    project = open_or_create(tmp_path / "ct")
    document = project.load_document(0)
    assert document.is_volume
    document.apply((slice(1, 2), slice(10, 30), slice(10, 30)), None, 1, "slice 1")
    document.apply((slice(3, 4), slice(0, 5), slice(0, 5)), None, 0, "slice 3")
    project.save_document(0, document)
    sources = sources_from_project(project)
    assert [s.slice_index for s in sources] == [1, 3]
    assert sources[0].stem.endswith("#z1")
    preprocessing = Preprocessing("RGB", (0.5,) * 3, (0.25,) * 3)
    image, labels = load_source(sources[0], num_classes=2, preprocessing=preprocessing)
    assert isinstance(image, MappedImage) and image.shape == (128, 128)
    np.testing.assert_array_equal(np.asarray(image), document.volume.array[1])  # the stored HU
    assert image.intensity == volume_intensity(document.volume.array, preprocessing)  # what inference uses
    assert labels[20, 20] == 1 and labels[0, 0] == 255
    # a checkpoint from before the normalisation was recorded trains through the CT soft-tissue window:
    # slice 1 holds HU -23 everywhere, grey 88 in the window (40, 400)
    old, _ = load_source(sources[0], num_classes=2, preprocessing=LEGACY)
    grey = old.intensity.apply(np.asarray(old))[0, 0] * 255
    assert abs(grey - round((-23 - (40 - 0.5)) / 399 * 255 + 127.5)) <= 1


def test_a_fixed_window_from_the_checkpoint_normalises_training_slices(tmp_path):
    from segstudio.io.project_opening import open_or_create
    from segstudio.training.project_data import load_source, sources_from_project
    from tests.io.test_dicom import make_ct_series

    make_ct_series(tmp_path / "ct")
    project = open_or_create(tmp_path / "ct")
    document = project.load_document(0)
    document.apply((slice(1, 2), slice(0, 5), slice(0, 5)), None, 1, "slice 1")
    project.save_document(0, document)
    source = sources_from_project(project)[0]
    lung_window = with_normalization(Preprocessing(), "window", input_window=(-600.0, 1500.0))
    lung, _ = load_source(source, 2, lung_window)  # HU -23 is bright in a lung window
    soft, _ = load_source(source, 2, LEGACY)  # the file's (soft-tissue) window
    assert lung.intensity.apply(np.asarray(lung))[0, 0] > soft.intensity.apply(np.asarray(soft))[0, 0] + 0.2


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_monochrome1_volume_slices_are_trained_on_inverted_as_shown(tmp_path):
    """A real computed radiograph (MONOCHROME1): training sees it inverted, as the studio shows it."""
    import shutil

    from segstudio.io.project_opening import open_or_create
    from segstudio.windowing import apply_window
    from tests.io.test_dicom import CR_FILE, pydicom_file

    (tmp_path / "cr").mkdir()
    shutil.copy(pydicom_file(CR_FILE), tmp_path / "cr" / "cr.dcm")
    project = open_or_create(tmp_path / "cr")
    document = project.load_document(0)
    assert document.volume.invert
    document.apply((slice(0, 1), slice(2, 6), slice(2, 6)), None, 1, "a bone")
    project.save_document(0, document)
    values = document.volume.array[0]
    # an old checkpoint: through the file's window, inverted
    image, labels = load_source(sources_from_project(project)[0], num_classes=2, preprocessing=LEGACY)
    np.testing.assert_allclose(image.intensity.apply(np.asarray(image)) * 255,
                               apply_window(values, 1600.0, 2800.0, invert=True), atol=0.51)
    assert labels[3, 3] == 1 and labels[0, 0] == 255
    # a new one: between the volume's percentiles, inverted (the lowest values brightest)
    image, _ = load_source(sources_from_project(project)[0], 2, Preprocessing())
    mapped = image.intensity.apply(np.asarray(image))
    assert mapped[values == values.min()].min() > 0.99 and mapped[values == values.max()].max() < 0.01


def test_labelled_regions_of_the_projects_slides_are_training_samples(tmp_path, caplog):
    from segstudio.annotation.slide_document import SlideDocument, slide_folder
    from segstudio.io.pyramid import build_pyramid_steps
    from segstudio.tasks import run_to_completion

    project, truths = make_project(tmp_path, [ImageStatus.CORRECTED])
    y, x = np.mgrid[0:2600, 0:3000]
    pixels = np.stack([(y * 3) % 251, (x * 5) % 241, (x + y) % 239], axis=2).astype(np.uint8)
    slide = run_to_completion(build_pyramid_steps(pixels, tmp_path / "scan.ome.tif"))
    document = SlideDocument.open(slide, slide_folder(slide, project.folder / "slides"), project.classes)
    for row, value in ((100, 1), (2000, 2)):  # two regions apart (no chunk between them joins them)
        document.begin_stroke("brush")
        document.paint_segment((row, 300), (row, 400), 20, value)
        document.end_stroke()
    document.save()
    document.close()

    sources = sources_from_project(project)
    assert [s.stem for s in sources] == ["img0", "scan.ome.tif@0,512,0,512", "scan.ome.tif@1536,2048,0,512"]
    image, labels = load_source(sources[1], num_classes=3, preprocessing=Preprocessing())
    assert isinstance(image, MappedImage) and image.shape[:2] == labels.shape == (512 + 64, 512 + 64)
    np.testing.assert_array_equal(np.asarray(image), pixels[:576, :576])  # the region and its context
    assert labels[100, 350] == 1 and labels[100, 600 - 64] == 255 and (labels[512:, :] == 255).all()
    assert [s.stem for s in sources_from_project(project, [0])] == ["img0"]  # chosen images: no slides
    loaded = load_sources(sources, num_classes=3)
    assert loaded.stems == [s.stem for s in sources] and not loaded.skipped

    slide.rename(tmp_path / "moved.ome.tif")  # the slide file is gone: its labels are left out, said once
    with caplog.at_level(logging.WARNING):
        assert [s.stem for s in sources_from_project(project)] == ["img0"]
    assert "scan.ome.tif" in caplog.text and "gone" in caplog.text
