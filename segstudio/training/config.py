"""Training settings and the choice of device and precision."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from segstudio.errors import InvalidArgumentError
from segstudio.training.losses import LOSSES
from segstudio.training.sampling import CLASS_CENTRED_SHARE

LOSS_CHOICES = ("auto", *LOSSES)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")

#: the learning rate and weight decay each optimizer gets unless told otherwise
#: (SGD: the FCN/DeepLab/U-Net papers' setting for fine-tuning; AdamW: measured, see README)
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-4}

#: Dice + cross-entropy under ``loss="auto"`` when a class holds less than this share of the labelled pixels
RARE_CLASS_SHARE = 0.10


@dataclass
class TrainConfig:
    """How to train a model. The defaults are the ones measured to converge
    from scratch and from a checkpoint on real images (see README,
    "Training"), except the length: 20 epochs here, where the command
    defaults to 5 minutes and the studio to 2.

    Attributes
    ----------
    epochs:
        Run length in epochs. An epoch is as many crops as it takes to cover
        the labelled pixels of the training images once (labelled pixels /
        crop area, rounded up to whole batches): a fully labelled 512 x 512
        image gives 4 crops of 256 x 256 per epoch, a whole slide with a few
        painted regions as many as those regions need. Checkpoints and
        validation happen at the end of each epoch (costly ones less often,
        see :mod:`segstudio.training.loop`).
    steps:
        Run length in optimisation steps; wins over ``epochs``.
    time_budget_s:
        Run length in seconds of training: the run stops at the first step
        past it (with ``epochs`` or ``steps`` as well, whichever comes
        first). The learning-rate schedule follows the clock, so it has
        decayed when the time is up. At least one of the three must be set.
    batch_size:
        Crops per optimisation step.
    crop_size:
        Side of the square training crops (images smaller than that are
        padded with unlabelled pixels).
    class_share:
        Share of the crops centred on a labelled pixel of a randomly chosen
        class (the others lie anywhere around a random labelled pixel); see
        :mod:`segstudio.training.sampling`.
    optimizer:
        ``"adamw"`` (default) or ``"sgd"`` (momentum 0.9, as in the papers).
    lr, weight_decay:
        ``None`` takes the optimizer's default (AdamW 1e-3 / 1e-4,
        SGD 0.01 / 5e-4).
    schedule:
        ``"cosine"`` (default), ``"poly"`` (``(1 - t) ** 0.9``) or
        ``"constant"``, over the run's progress ``t`` (steps done / steps,
        or seconds used / time budget).
    warmup:
        Share of the run over which the learning rate rises linearly from
        zero (0 turns it off).
    loss:
        ``"auto"`` (Dice + cross-entropy when a class holds less than 10 % of
        the labelled pixels, else cross-entropy), ``"ce"`` or ``"dice_ce"``.
    affinity:
        Weight of the pairwise term that spreads labels into unlabelled
        pixels of similar intensity nearby
        (:func:`~segstudio.training.pairwise.affinity_loss`); it acts only on
        crops with unlabelled pixels. 0 turns it off.
    class_weights:
        Optional cross-entropy weight per class.
    border_weight:
        Weight each pixel's cross-entropy by the U-Net paper's border weight
        map (touching objects' gaps count more).
    freeze_backbone:
        Train only the head / decoder; the trunk keeps its weights and its
        BatchNorm statistics.
    amp:
        ``"auto"``: bf16 (or fp16 where bf16 is not supported) autocast on
        CUDA, none elsewhere; ``"off"``; or ``"bf16"`` / ``"fp16"`` to force
        one (bf16 autocast also works on CPUs).
    channels_last:
        Run convolutions in NHWC memory layout (faster on recent CPUs and
        tensor-core GPUs).
    device:
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ``"mps"``.
    seed:
        Seeds the crops and their augmentation (each crop is a function of
        the seed, the epoch and its place in the epoch), so a resumed run
        repeats an uninterrupted one.
    val_every:
        Validate every this many epochs (and always after the last). In a
        run with a time budget, a validation is also skipped while the last
        one took more than a quarter of the time since.
    num_workers:
        DataLoader worker processes (0: load in the training process).
    augment:
        Random zoom, flips, rotations and brightness/contrast jitter; when
        off, crops are still drawn from the labelled pixels.
    """

    epochs: int | None = 20
    steps: int | None = None
    time_budget_s: float | None = None
    batch_size: int = 4
    crop_size: int = 256
    class_share: float = CLASS_CENTRED_SHARE
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str = "cosine"
    warmup: float = 0.05
    loss: str = "auto"
    affinity: float = 1.0
    class_weights: list[float] | None = None
    border_weight: bool = False
    freeze_backbone: bool = False
    amp: str = "auto"
    channels_last: bool = False
    device: str = "auto"
    seed: int = 0
    val_every: int = 1
    num_workers: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidArgumentError` for any value out of range."""
        for name in ("epochs", "steps", "batch_size", "crop_size", "val_every"):
            value = getattr(self, name)
            if value is None and name in ("epochs", "steps"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if self.epochs is None and self.steps is None and self.time_budget_s is None:
            raise InvalidArgumentError("a run needs a length: epochs, steps or a time budget")
        for name in ("class_share", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0 \
                    or (name == "warmup" and value >= 1.0):
                raise InvalidArgumentError(f"{name} must be a share between 0 and 1, got {value!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InvalidArgumentError(f"num_workers must be 0 or more, got {self.num_workers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidArgumentError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name, value, choices in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("loss", self.loss, LOSS_CHOICES),
            ("amp", self.amp, AMP_MODES),
        ):
            if value not in choices:
                raise InvalidArgumentError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        device_kind = str(self.device).split(":")[0]
        if device_kind not in DEVICES or (":" in str(self.device) and device_kind != "cuda"):
            raise InvalidArgumentError(
                f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {self.device!r}"
            )
        if isinstance(self.affinity, bool) or not isinstance(self.affinity, int | float) \
                or not math.isfinite(self.affinity) or self.affinity < 0:
            raise InvalidArgumentError(f"affinity must be a non-negative number, got {self.affinity!r}")
        for name in ("lr", "weight_decay", "time_budget_s"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
            if value < 0 or (name != "weight_decay" and value == 0):
                raise InvalidArgumentError(f"{name} must be positive, got {value!r}")
        if self.class_weights is not None:
            weights = list(self.class_weights)
            if not weights or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                for w in weights
            ):
                raise InvalidArgumentError(f"class_weights must be non-negative numbers, got {self.class_weights!r}")
            self.class_weights = [float(w) for w in weights]

    @property
    def effective_lr(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return DEFAULT_WEIGHT_DECAY[self.optimizer]

    def resolved_loss(self, class_pixels: Mapping[int, int]) -> str:
        """The loss an ``"auto"`` setting becomes for these labelled-pixel counts per class."""
        if self.loss != "auto":
            return self.loss
        total = sum(class_pixels.values())
        rare = total > 0 and len(class_pixels) > 1 and min(class_pixels.values()) < RARE_CLASS_SHARE * total
        return "dice_ce" if rare else "ce"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what checkpoints record as provenance)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config; unknown keys are an error, missing ones default."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = dict(values)
        if "steps" not in values:
            # settings written before runs had a warm-up, the pairwise term (or a length in steps)
            values.setdefault("warmup", 0.0)
            values.setdefault("affinity", 0.0)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**dict(values))


def resolve_device(name: str) -> torch.device:
    """The torch device for a device setting; an unavailable one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError("device 'mps' was asked for but Apple's MPS is not available; use --device cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"not a device: {name!r} ({exc})") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidArgumentError(
            f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting on ``device`` (``None``: full precision)."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type == "cpu":
        raise InvalidArgumentError("fp16 autocast is for GPUs; on a CPU use amp 'bf16' or 'off'")
    return torch.bfloat16 if mode == "bf16" else torch.float16
