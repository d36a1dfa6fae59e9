"""The studio window: the only package that imports PySide6, superqt and pyqtgraph."""
