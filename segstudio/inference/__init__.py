"""Inference: device and precision choice, sliding-window tiling, blending."""

from segstudio.inference.device import Precision, resolve_device, resolve_precision
from segstudio.inference.predictor import PredictionResult, Predictor

__all__ = ["Precision", "PredictionResult", "Predictor", "resolve_device", "resolve_precision"]
