"""Post-processing that sharpens a network's class probabilities."""

from segstudio.refine.dense_crf import CRFParams, RefineResult, refine, refine_steps

__all__ = ["CRFParams", "RefineResult", "refine", "refine_steps"]
