"""The canvas's mouse tools."""

from __future__ import annotations

from enum import Enum


class Tool(str, Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    FILL = "fill"
    POLYGON = "polygon"
    ACCEPT = "accept"  # paint a region in which the prediction is accepted
    PAN = "pan"  # a left drag pans
    EYEDROPPER = "eyedropper"  # a left click picks the label under it as the active class
    WAND = "wand"  # a left click fills the connected pixels of similar intensity (magic wand)
    SCRIBBLE = "scribble"  # paints like the brush; each stroke also refines the prediction (CRF)
