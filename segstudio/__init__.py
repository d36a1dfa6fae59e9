"""segstudio: model-assisted semantic segmentation.

Importing this package stays cheap: no torch, no Qt.
"""

__version__ = "0.1.0"
