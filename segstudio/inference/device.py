"""Where a model runs (CUDA, Apple MPS, CPU) and in which precision."""

from __future__ import annotations

import logging
from enum import Enum

import torch

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class Precision(str, Enum):
    """Arithmetic of the forward pass. ``AUTO`` picks the fast path the
    device supports: bf16 autocast on CUDA with bf16 (fp16 otherwise) and on
    CPUs with native bf16 (AVX-512 BF16 / AMX), fp32 elsewhere."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA if present, then Apple MPS, then the CPU.

    Asking for a device this machine does not have is a user error.
    """
    if isinstance(name, torch.device):
        return name
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise InvalidArgumentError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU on this machine")
    if name == "mps" and not mps_available():
        raise InvalidArgumentError("device 'mps' was asked for, but Apple MPS is not available here")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check is not None and check()) or (amx is not None and amx()))


def resolve_precision(precision: Precision | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` = fp32."""
    try:
        precision = Precision(precision)
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise InvalidArgumentError(f"precision must be one of {choices}, not {precision!r}") from None
    if precision is Precision.FP32:
        return None
    if precision is Precision.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return None
    if precision is Precision.FP16 and device.type == "cpu":
        raise InvalidArgumentError("fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if precision is Precision.BF16 else torch.float16


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or MPS)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
