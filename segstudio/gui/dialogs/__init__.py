"""Modal dialogs of the studio."""

from segstudio.gui.dialogs.export import ExportDialog

__all__ = ["ExportDialog"]
