"""Data-parallel training under ``torchrun`` (one node or many).

``segstudio train`` notices torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and then:

* joins the process group: NCCL with one GPU per process
  (``cuda:LOCAL_RANK``), gloo on CPUs;
* wraps the model in ``DistributedDataParallel`` (gradients averaged across
  processes; ``--batch-size`` is per process);
* gives each process its share of the images through a
  ``DistributedSampler`` re-shuffled every epoch (``set_epoch``);
* validates, logs and writes checkpoints, training state and history on
  rank 0 only; the other ranks log warnings only;
* meets at a barrier at the end of every epoch and leaves the group at the end.

On several nodes the output folder must be on a file system every node sees
only if ``--resume`` is used (every rank reads the saved state); otherwise
only rank 0's node needs it.

Test hook: when the environment variable ``SEGSTUDIO_RECORD_SAMPLES`` names a
folder, every rank writes the indices of the training samples it was given,
per epoch, to ``<folder>/rank<r>.json`` (``{"rank", "world_size",
"epochs": {"1": [...], ...}}``). It exists so a test can check that the
ranks share the data out; it costs one small file write per epoch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)

RECORD_SAMPLES_ENV = "SEGSTUDIO_RECORD_SAMPLES"


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, logs and writes files."""
        return self.rank == 0


def torchrun_environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when started by torchrun, else ``None``.

    Raises
    ------
    InvalidArgumentError
        The variables are present but not sensible integers.
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(name, "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise InvalidArgumentError(f"the environment variable {name}={text!r} is not an integer") from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InvalidArgumentError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, "
                                   f"LOCAL_RANK={local}")
    return rank, world, local


def init_distributed(device_setting: str = "auto") -> DistributedContext | None:
    """Join torchrun's process group; ``None`` when not under torchrun (or alone).

    Parameters
    ----------
    device_setting:
        The training device setting: ``"auto"`` takes GPUs when there are
        any, ``"cuda"`` requires them, ``"cpu"`` uses gloo on CPUs. A device
        index is ignored: each process takes the GPU of its local rank.

    Raises
    ------
    InvalidArgumentError
        CUDA was asked for but is missing, there are fewer GPUs than
        processes on this node, or MPS was asked for.
    """
    environment = torchrun_environment()
    if environment is None:
        return None
    rank, world, local = environment
    if world == 1:
        log.info("torchrun with a single process: training without DistributedDataParallel")
        return None
    kind = str(device_setting).split(":")[0]
    if kind == "mps":
        raise InvalidArgumentError("distributed training runs on CUDA GPUs or on CPUs, not on MPS")
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InvalidArgumentError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
        if local >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"local rank {local} needs GPU {local} but this node has {torch.cuda.device_count()}; "
                "start at most one process per GPU"
            )
        if ":" in str(device_setting):
            log.warning("under torchrun each process uses the GPU of its local rank; %s is ignored", device_setting)
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend=backend)
    context = DistributedContext(rank, world, local, backend, device)
    log.debug("distributed training: rank %d of %d (%s on %s)", rank, world, backend, device)
    if context.is_main:
        log.info("distributed training: %d processes (%s on %s)", world, backend,
                 "GPUs" if device.type == "cuda" else "CPUs")
    return context


def cleanup(context: DistributedContext | None) -> None:
    """Leave the process group (safe to call twice or with ``None``)."""
    if context is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext | None) -> None:
    """Wait until every rank gets here."""
    if context is None:
        return
    if context.backend == "nccl":
        dist.barrier(device_ids=[context.device.index])
    else:
        dist.barrier()


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``DistributedDataParallel`` around a model already on ``context.device``.

    Parameters that do not require gradients (a frozen backbone) are left
    out of the gradient exchange.
    """
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def make_sampler(dataset: Dataset, context: DistributedContext, seed: int) -> DistributedSampler:
    """This rank's share of the samples; call ``set_epoch`` every epoch.

    Every rank gets the same number of samples (the last few are repeated
    when they do not divide evenly), so every rank takes the same number of
    steps.
    """
    return DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed, drop_last=False
    )


def mean_across(value: float, context: DistributedContext | None) -> float:
    """The mean of a number over all ranks."""
    if context is None:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def main_decides(flag: bool, context: DistributedContext | None) -> bool:
    """Rank 0's value of a flag, on every rank (so that all stop together)."""
    if context is None:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=context.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def record_samples(context: DistributedContext | None, epoch: int, indices: Sequence[int]) -> None:
    """The ``SEGSTUDIO_RECORD_SAMPLES`` test hook (see the module docstring)."""
    folder = os.environ.get(RECORD_SAMPLES_ENV)
    if not folder:
        return
    rank = 0 if context is None else context.rank
    world = 1 if context is None else context.world_size
    path = Path(folder) / f"rank{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {"rank": rank, "world_size": world, "epochs": {}}
    record["epochs"][str(epoch)] = [int(i) for i in indices]
    path.write_text(json.dumps(record), encoding="utf-8")
