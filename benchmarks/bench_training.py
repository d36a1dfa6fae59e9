"""Time fine-tuning on the sample set: full precision against the fast path.

Run from the repository root::

    python benchmarks/bench_training.py [--budget 60] [--target 0.7] [--device auto]

For each mode it trains a fresh U-Net (same seed, same data, same settings)
for ``--budget`` seconds and reports optimisation steps per second (training
steps only, validation excluded), the time until validation mIoU first
reaches ``--target`` (training time and wall time including validation) and
the best mIoU seen. The modes:

* ``fp32``: full precision, NCHW;
* ``fast``: on CUDA, AMP (bf16 where supported, else fp16) + channels-last;
  on a CPU with bf16 support (AVX512-BF16 / AMX), bf16 autocast +
  channels-last; elsewhere channels-last alone;
* ``frozen``: fp32 with the encoder frozen (decoder-only fine-tuning; it
  reaches a lower mIoU from scratch, it is here for its speed).

The data is ``resources/sample`` (images/, masks/, classes.json); if that
folder is missing, the same set is generated into a temporary folder with
:mod:`segstudio.synthetic`.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.commands.common import read_classes_file  # noqa: E402
from segstudio.models import get_model  # noqa: E402
from segstudio.synthetic import write_sample_set  # noqa: E402
from segstudio.tasks import CancelToken, TaskCancelled  # noqa: E402
from segstudio.training import TrainConfig, find_pairs, load_samples, resolve_device, train_steps  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample"


def load_sample_set(folder: Path):
    classes = read_classes_file(folder / "classes.json")
    loaded = load_samples(find_pairs(folder))
    stems = [p.stem for p in loaded.paths]
    val_stems = set((classes or {}).get("split", {}).get("val", [])) if classes else set()
    if not val_stems:
        val_stems = set(stems[-3:])
    train = [s for s, stem in zip(loaded.samples, stems, strict=True) if stem not in val_stems]
    val = [s for s, stem in zip(loaded.samples, stems, strict=True) if stem in val_stems]
    names = classes["names"] if classes else ["background", "cytoplasm", "nucleus"]
    return train, val, names


def cpu_has_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def fast_settings(device: torch.device) -> tuple[str, bool, str]:
    """(amp, channels_last, description) of the fast path on this device."""
    if device.type == "cuda":
        dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return dtype, True, f"{dtype} autocast + channels-last"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16", True, "bf16 autocast + channels-last"
    return "off", True, "channels-last"


def run_mode(name, train, val, names, args, device, *, amp, channels_last, freeze):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=len(names), in_channels=3, base_width=args.width, depth=4,
                      batch_norm=True, padding="same")
    config = TrainConfig(
        epochs=10_000, batch_size=args.batch, crop_size=args.crop, optimizer="sgd", lr=0.05,
        schedule="constant", device=str(device), amp=amp, channels_last=channels_last,
        freeze_backbone=freeze, val_every=args.val_every, seed=0,
    )
    cancel = CancelToken()
    step_times: list[float] = []
    train_time = 0.0
    reached = None
    best = -math.inf
    started = time.perf_counter()
    last = started
    steps = 0
    with tempfile.TemporaryDirectory() as out:
        task = train_steps(model, train, val, config, out, meta={"class_names": names}, cancel=cancel)
        try:
            for progress in task:
                now = time.perf_counter()
                if progress.stage == "train":
                    # the first steps include allocator / autotuning warm-up
                    if progress.done > 3:
                        step_times.append(now - last)
                    train_time += now - last
                    steps = progress.done
                elif progress.stage == "val":
                    miou = progress.metrics["mean_iou"]
                    best = max(best, miou)
                    if reached is None and miou >= args.target:
                        reached = (train_time, now - started, steps)
                if now - started >= args.budget:
                    cancel.cancel()
                last = time.perf_counter()
        except TaskCancelled:
            pass
    steps_per_s = len(step_times) / sum(step_times) if step_times else math.nan
    return {
        "mode": name, "steps_per_s": steps_per_s, "images_per_s": steps_per_s * args.batch,
        "reached": reached, "best": best, "steps": steps, "wall": time.perf_counter() - started,
    }


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{platform.system()} {platform.release()}, {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per mode (default 60)")
    parser.add_argument("--target", type=float, default=0.7, help="validation mIoU to reach (default 0.7)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=16, help="U-Net base width (default 16)")
    parser.add_argument("--val-every", type=int, default=5, help="validate every N epochs (default 5)")
    parser.add_argument("--modes", nargs="+", default=["fp32", "fast", "frozen"], choices=["fp32", "fast", "frozen"])
    args = parser.parse_args()

    device = resolve_device(args.device)
    if SAMPLE.is_dir():
        train, val, names = load_sample_set(SAMPLE)
        source = str(SAMPLE)
    else:
        with tempfile.TemporaryDirectory(prefix="segstudio-sample-") as folder:
            write_sample_set(folder)
            train, val, names = load_sample_set(Path(folder))
        source = "resources/sample is missing; the same set generated with segstudio.synthetic"
    amp, channels_last, fast_text = fast_settings(device)
    print(f"machine: {machine(device)}")
    print(f"data: {source}: {len(train)} training, {len(val)} validation images")
    print(f"model: unet base_width={args.width} depth=4 BN, crop {args.crop}, batch {args.batch}, SGD lr 0.05; "
          f"{args.budget:.0f} s per mode; fast path = {fast_text}")
    settings = {
        "fp32": {"amp": "off", "channels_last": False, "freeze": False},
        "fast": {"amp": amp, "channels_last": channels_last, "freeze": False},
        "frozen": {"amp": "off", "channels_last": False, "freeze": True},
    }
    rows = []
    for mode in args.modes:
        rows.append(run_mode(mode, train, val, names, args, device, **settings[mode]))
        print(f"  {mode}: done", file=sys.stderr)
    header = f"{'mode':<8} {'steps/s':>8} {'images/s':>9} {'to mIoU ' + format(args.target, '.2f'):>22} {'best mIoU':>10} {'steps':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if row["reached"] is None:
            reach = "not reached"
        else:
            train_s, wall_s, steps = row["reached"]
            reach = f"{train_s:6.1f} s ({wall_s:.0f} s wall, {steps} st)"
        print(f"{row['mode']:<8} {row['steps_per_s']:8.2f} {row['images_per_s']:9.1f} {reach:>22} "
              f"{row['best']:10.3f} {row['steps']:6d}")
    if len(rows) > 1 and rows[0]["mode"] == "fp32":
        for row in rows[1:]:
            print(f"{row['mode']} vs fp32: {row['steps_per_s'] / rows[0]['steps_per_s']:.2f}x steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
