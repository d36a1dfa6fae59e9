"""Dock panels of the main window.

Each panel is a view: setters show what the document holds without emitting,
and user actions come out as Qt signals that the main window wires to the
document.
"""

from segstudio.gui.panels.classes import ClassesPanel
from segstudio.gui.panels.crf import CRFPanel
from segstudio.gui.panels.images import ImagesPanel
from segstudio.gui.panels.layers import LayersPanel
from segstudio.gui.panels.model import ModelPanel

__all__ = ["CRFPanel", "ClassesPanel", "ImagesPanel", "LayersPanel", "ModelPanel"]
