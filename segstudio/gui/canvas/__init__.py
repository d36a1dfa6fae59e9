"""The image canvas: view (zoom/pan), layers, and the mouse tools."""

from segstudio.gui.canvas.view import Canvas, Tool

__all__ = ["Canvas", "Tool"]
