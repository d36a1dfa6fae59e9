"""Where and how to export the label maps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from segstudio.errors import InvalidArgumentError
from segstudio.io.export import EXPORT_FORMATS as _EXPORTER_FORMATS
from segstudio.io.export import IMAGE_FORMATS

# title and tooltip per format of segstudio.io.export, in the exporter's order
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "png": (
        "Label PNG (pixel = class index)",
        ("One file per image (a volume: a folder with one PNG per slice); pixel values are class indices. "
         "Up to 254 classes: an indexed PNG with the class palette, 255 = unlabelled. More classes: a 16-bit "
         "greyscale PNG, 65535 = unlabelled"),
    ),
    "overlay": ("Colour overlay PNG", "The image with the class colours blended on top, for reports"),
    "binary": ("One binary mask per class", "A black-and-white PNG per image and class"),
    "ome-tiff": (
        "Pyramidal OME-TIFF label image",
        "Pixel = class index (255 = unlabelled), tiled with halved levels: whole-slide viewers (QuPath, napari) "
        "open it at any zoom",
    ),
    "geojson": (
        "GeoJSON class polygons (QuPath)",
        "The regions of each class as polygons with holes, named and coloured as the class: "
        "QuPath's File > Import objects reads them",
    ),
    "nifti": (
        "NIfTI label volume (.nii.gz)",
        "One label volume per volume, on the source's voxel grid and orientation; unlabelled voxels are 0",
    ),
    "dicom-seg": (
        "DICOM SEG (.seg.dcm)",
        "A DICOM Segmentation per series, referencing the source images; one segment per class present",
    ),
}
assert tuple(EXPORT_FORMATS) == _EXPORTER_FORMATS


def formats_for(entries: Iterable) -> tuple[str, ...]:
    """The export formats that apply to at least one of the project *entries*.

    Asks the exporter's own rule (why it would skip an entry), so the dialog
    never offers a format that would write nothing: NIfTI and DICOM SEG for
    volumes, DICOM SEG only for DICOM sources, overlay and binary for 2-D images.
    """
    from segstudio.io.export import _skip_reason

    entries = list(entries)
    if not entries:
        return IMAGE_FORMATS
    return tuple(fmt for fmt in EXPORT_FORMATS if any(_skip_reason(entry, fmt) is None for entry in entries))


class ExportDialog(QDialog):
    """Ask for an output folder and an export format.

    ``ExportDialog(parent).choice()`` shows it and returns the answer;
    :meth:`selection` reads the fields without showing anything.
    """

    def __init__(self, parent: QWidget | None = None, folder: Path | str | None = None, fmt: str = "png",
                 formats: Sequence[str] = IMAGE_FORMATS) -> None:
        super().__init__(parent)
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown or not formats:
            raise InvalidArgumentError(f"unknown export format(s) {unknown}; expected some of {', '.join(EXPORT_FORMATS)}")
        self._finished = False
        self.setWindowTitle("Export labels")
        self._folder = QLineEdit(str(folder) if folder else "")
        self._folder.setPlaceholderText("Choose an output folder")
        self._folder.setMinimumWidth(320)
        self._folder.textChanged.connect(self._on_folder_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)

        self._formats = QButtonGroup(self)
        format_box = QGroupBox("Format")
        format_layout = QVBoxLayout(format_box)
        self._radios: dict[str, QRadioButton] = {}
        for key in formats:
            title, tip = EXPORT_FORMATS[key]
            radio = QRadioButton(title)
            radio.setToolTip(tip)
            self._formats.addButton(radio)
            format_layout.addWidget(radio)
            self._radios[key] = radio
        self.set_format(fmt if fmt in self._radios else next(iter(self._radios)))

        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self._buttons.accepted.connect(self.accept)
        self._buttons.rejected.connect(self.reject)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self._folder, 1)
        folder_row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Output folder"))
        layout.addLayout(folder_row)
        layout.addWidget(format_box)
        layout.addWidget(self._buttons)
        self._on_folder_changed(self._folder.text())

    @classmethod
    def ask(
        cls, parent: QWidget | None = None, folder: Path | str | None = None, fmt: str = "png",
        formats: Sequence[str] = IMAGE_FORMATS,
    ) -> tuple[Path, str] | None:
        """Build the dialog, show it modally and return :meth:`choice`'s answer."""
        return cls(parent, folder, fmt, formats).choice()

    def choice(self) -> tuple[Path, str] | None:
        """Show the dialog modally; ``(folder, format)`` if accepted, else None.

        ``format`` is one of the offered formats (``"png"``, ``"overlay"``,
        ``"binary"``, ``"nifti"``, ``"dicom-seg"``). A dialog that
        was already closed (accepted or rejected) is not shown again.
        """
        if not self._finished:
            self.exec()
        if self.result() != QDialog.DialogCode.Accepted:
            return None
        return self.selection()

    def done(self, result: int) -> None:  # noqa: D102 (Qt override)
        self._finished = True
        super().done(result)

    def selection(self) -> tuple[Path, str] | None:
        """What the dialog shows now, accepted or not; None without a folder."""
        text = self._folder.text().strip()
        if not text:
            return None
        fmt = next(key for key, radio in self._radios.items() if radio.isChecked())
        return Path(text).expanduser(), fmt

    def set_folder(self, folder: Path | str) -> None:
        """Fill in the output folder."""
        self._folder.setText(str(folder))

    def set_format(self, fmt: str) -> None:
        """Select one of the offered formats."""
        if fmt not in self._radios:
            raise InvalidArgumentError(f"export format {fmt!r} is not offered here; expected one of "
                                       f"{', '.join(self._radios)}")
        self._radios[fmt].setChecked(True)

    # -- dialogs (tests replace these) --------------------------------------------
    def _ask_folder(self) -> str | None:
        path = QFileDialog.getExistingDirectory(self, "Export to folder", self._folder.text())
        return path or None

    def _on_browse_clicked(self) -> None:
        path = self._ask_folder()
        if path:
            self._folder.setText(path)

    def _on_folder_changed(self, text: str) -> None:
        self._buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(text.strip()))
