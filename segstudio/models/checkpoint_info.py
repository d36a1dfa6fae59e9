"""What a checkpoint is, in words a user reads in the Model panel.

Only its metadata is read (no weights): the architecture and its size
arguments, the classes, how images become its input, and what its training
recorded (epochs, the last validation score, the time it was saved).
"""

from __future__ import annotations

import math
from typing import Any

from segstudio.models.checkpoint import CheckpointMeta

#: architecture arguments that say nothing to a user (the classes and channels have rows of their own)
_HIDDEN_ARGS = ("num_classes", "in_channels")


def describe_checkpoint(meta: CheckpointMeta) -> list[tuple[str, str]]:
    """Rows of ``(label, text)`` describing *meta*."""
    args = ", ".join(f"{key} {value}" for key, value in sorted(meta.arch_args.items()) if key not in _HIDDEN_ARGS)
    rows = [("Network", f"{meta.architecture} ({args})" if args else meta.architecture),
            ("Classes", f"{meta.num_classes}: {', '.join(meta.class_names)}"),
            ("Input", f"{meta.in_channels} channel(s), {_input_mapping(meta.preprocessing)}")]
    rows.append(("Trained", _training(meta.provenance)))
    return rows


def _input_mapping(pre) -> str:
    kind = pre.normalization
    if kind == "window" and pre.input_window:
        center, width = pre.input_window
        return f"window L {center:g} / W {width:g}"
    if kind == "range" and pre.value_range:
        low, high = pre.value_range
        return f"values {low:g}..{high:g} to 0..1"
    if kind == "percentile":
        low, high = pre.percentiles
        return f"each image stretched between its {low:g}th and {high:g}th percentiles"
    if kind == "auto":
        return "8-bit / 255, deeper images stretched between percentiles"
    return "integers / their type's maximum"


def _training(provenance: dict[str, Any]) -> str:
    if provenance.get("untrained_start"):
        return "not yet: random weights (train it in the Training panel)"
    history = provenance.get("history")
    if not isinstance(history, list) or not history:
        return "outside segstudio (no training record)"
    parts = [f"{len(history)} epoch(s)"]
    score = _last_score(history)
    if score is not None:
        parts.append(f"last validation mIoU {score:.3f}")
    saved = provenance.get("saved")
    if isinstance(saved, str) and saved:
        parts.append(f"saved {saved.replace('T', ' ')[:16]} UTC")
    return ", ".join(parts)


def _last_score(history: list) -> float | None:
    for record in reversed(history):
        value = record.get("val_mean_iou", record.get("mean_iou")) if isinstance(record, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None
