"""Post-processing that sharpens a network's class probabilities."""

from segstudio.refine.crf import BACKENDS, TileProgress, choose_backend, refine, refine_steps
from segstudio.refine.dense_crf import CRFParams, RefineResult
from segstudio.refine.scribbles import (
    ScribbleResult,
    refine_with_scribbles,
    refine_with_scribbles_steps,
    scribble_region,
)

__all__ = [
    "BACKENDS",
    "CRFParams",
    "RefineResult",
    "ScribbleResult",
    "TileProgress",
    "choose_backend",
    "refine",
    "refine_steps",
    "refine_with_scribbles",
    "refine_with_scribbles_steps",
    "scribble_region",
]
