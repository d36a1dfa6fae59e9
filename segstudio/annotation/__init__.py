"""The annotation document: image, label map, classes, status and edit history.

Everything here is plain NumPy; the studio's widgets subscribe to a
:class:`Document` and write back through its methods. The painting tools in
:mod:`segstudio.annotation.tools` are pure functions returning ``(region, mask)``.
"""

from segstudio.annotation.classes import MAX_CLASSES, ClassList, LabelClass
from segstudio.annotation.document import Document, ImageStatus
from segstudio.annotation.history import Edit, History
from segstudio.annotation.tools import disk, flood_fill, polygon, stroke_segment

__all__ = [
    "MAX_CLASSES",
    "ClassList",
    "Document",
    "Edit",
    "History",
    "ImageStatus",
    "LabelClass",
    "disk",
    "flood_fill",
    "polygon",
    "stroke_segment",
]
