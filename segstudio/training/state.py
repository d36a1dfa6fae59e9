"""What a training run keeps on disk to be resumed.

``train_state.pt`` holds the optimizer, scaler and RNG state, the epoch,
step, seconds of training used and history: plain tensors and containers only, so that it loads
with ``torch.load(weights_only=True)``. The model's weights live in
``last.safetensors`` next to it; both are written atomically at the end of an
epoch, the weights first.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segstudio.errors import CheckpointError, InvalidArgumentError
from segstudio.models.checkpoint import load_weights, read_meta
from segstudio.training.collapse import CollapseReport
from segstudio.training.config import TrainConfig

log = logging.getLogger(__name__)

LAST_NAME = "last.safetensors"
BEST_NAME = "best.safetensors"
STATE_NAME = "train_state.pt"
STATE_FORMAT = 2


@dataclass
class RunState:
    """Where a run stands: finished epochs and steps, time used, history, best score."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_mean_iou: float = -math.inf
    finished: bool = False
    #: seconds of training so far (a resumed run continues its time budget and schedule)
    elapsed_s: float = 0.0
    #: the collapse check of the final model (a ``CollapseReport``), once the run ended
    collapse: Any = None


def load_run_state(out_dir: Path, model: nn.Module) -> tuple[RunState, dict[str, Any]]:
    """Read ``train_state.pt`` and load ``last.safetensors`` into ``model``.

    Returns the run state and the raw saved dict (optimizer state etc.).

    Raises
    ------
    CheckpointError
        Either file is missing or damaged, or they are from different epochs.
    """
    state_path, last_path = out_dir / STATE_NAME, out_dir / LAST_NAME
    if not state_path.is_file():
        raise CheckpointError(f"nothing to resume: there is no {STATE_NAME} in this folder", path=out_dir)
    try:
        raw = torch.load(state_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"the training state cannot be read ({exc})", path=state_path) from None
    if not isinstance(raw, dict) or "format" not in raw:
        raise CheckpointError("not a segstudio training state", path=state_path)
    if raw["format"] != STATE_FORMAT:
        # format 1 counted one crop per image as an epoch: its steps and epochs mean something else now
        raise CheckpointError(
            f"this run was started by an older segstudio (training state format {raw['format']}) and cannot be "
            f"resumed; start a new run from its weights instead (--checkpoint {LAST_NAME})",
            path=state_path,
        )
    provenance = read_meta(last_path).provenance
    last_epoch = provenance.get("epoch")
    if last_epoch != raw["epoch"]:
        raise CheckpointError(
            f"{LAST_NAME} is from epoch {last_epoch} but {STATE_NAME} from epoch {raw['epoch']} "
            "(the run was interrupted while saving); start again or keep the older files",
            path=out_dir,
        )
    load_weights(model, last_path)
    collapse = provenance.get("collapse")
    run = RunState(
        epoch=int(raw["epoch"]),
        step=int(raw["step"]),
        history=list(raw["history"]),
        best_mean_iou=float(raw["best_mean_iou"]),
        finished=bool(raw["finished"]),
        elapsed_s=float(raw.get("elapsed_s") or 0.0),
        collapse=CollapseReport.from_dict(collapse) if isinstance(collapse, Mapping) else None,
    )
    return run, raw


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, flushed, then renamed over ``path``."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def rng_state() -> dict[str, Any]:
    """torch's CPU (and, when in use, CUDA) generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_optimizers(
    saved: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    out_dir: Path,
) -> None:
    """Load optimizer, scaler and RNG state saved by a run (the learning rate
    follows from the step and the time used)."""
    try:
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the saved optimizer state does not fit this run ({exc}); were the settings changed?",
            path=out_dir / STATE_NAME,
        ) from None
    rng = saved.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def check_resumed_config(previous: Mapping[str, Any], config: TrainConfig) -> None:
    """Refuse a resume with another optimizer; warn about other changed settings."""
    if previous.get("optimizer") not in (None, config.optimizer):
        raise InvalidArgumentError(
            f"the run was started with optimizer {previous['optimizer']!r}; resume it with the same optimizer"
        )
    changed = sorted(
        k for k, v in config.to_dict().items() if k in previous and previous[k] != v and k != "time_budget_s"
    )
    if changed:
        log.warning("resuming with changed setting(s): %s", ", ".join(changed))
