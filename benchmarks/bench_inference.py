"""Predictor against a plain fp32 eager ``model(x)``, per model and size.

For each model at 512 x 512 and 1024 x 1024 (21 classes, random weights:
speed does not depend on training; "demo" is the shipped, trained U-Net,
whose label agreement means something — random networks sit near ties): the median latency of the Predictor
(its automatic precision, channels_last on CUDA, tiling, blending and
compact storage included) next to a plain fp32 ``model(x)`` + softmax in
eval mode in the same run, their ratio, peak memory of each, and how often
the two agree on the label.

    python benchmarks/bench_inference.py [--models fcn8s unet] [--sizes 512] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import PeakMemory, machine, median_seconds, table  # noqa: E402

from segstudio.inference import Predictor, resolve_device  # noqa: E402
from segstudio.models import get_model, list_models  # noqa: E402
from segstudio.models.checkpoint import make_meta  # noqa: E402
from segstudio.preprocess import image_to_tensor  # noqa: E402


def _image(size: int, channels: int, name: str) -> np.ndarray:
    if name == "demo":
        from segstudio.synthetic import generate_sample

        return generate_sample(7, size, size)[0]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    import cv2

    image = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    return image if channels == 3 else image[:, :, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[*list_models(), "demo"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(machine())
    print(f"device {device}; Predictor tile {args.tile}; baseline: fp32 eager model(x) + softmax, whole image\n")
    rows = []
    for name in args.models:
        channels = 3
        if name == "demo":
            from segstudio.models.checkpoint import load_checkpoint
            from segstudio.resources import DEMO_MODEL, resource_path

            model, meta = load_checkpoint(resource_path(*DEMO_MODEL))
            model.eval()
        else:
            model = get_model(name, num_classes=21, in_channels=channels).eval()
            meta = make_meta(model)
        predictor = Predictor(model, preprocessing=meta.preprocessing, device=device, tile_size=args.tile)
        for size in args.sizes:
            image = _image(size, channels, name)
            x = image_to_tensor(image, meta.preprocessing).unsqueeze(0).to(device)
            plain = model.to(memory_format=torch.contiguous_format)

            def baseline():
                with torch.inference_mode():
                    return plain(x).float().softmax(1)[0].argmax(0).cpu().numpy()

            with PeakMemory(device) as base_mem:
                base_time = median_seconds(baseline, args.repeats, device)
            reference = baseline()
            predictor.model = model.to(
                memory_format=torch.channels_last if predictor.channels_last else torch.contiguous_format
            )
            with PeakMemory(device) as pred_mem:
                pred_time = median_seconds(lambda p=predictor: p.predict(image), args.repeats, device)
            labels = predictor.predict(image).labels
            agreement = float((labels == reference).mean())
            rows.append([
                name, f"{size}", f"{base_time * 1000:.0f}", f"{pred_time * 1000:.0f}",
                f"{base_time / pred_time:.2f}x", f"{base_mem.peak / 2**20:.0f}", f"{pred_mem.peak / 2**20:.0f}",
                predictor.precision_name, f"{agreement * 100:.2f}%",
            ])
            print("  ".join(rows[-1]), file=sys.stderr, flush=True)
        del model, predictor
    print(table(
        ["model", "size", "fp32 ms", "Predictor ms", "speed-up", "fp32 MiB", "Pred MiB", "prec", "agree"],
        rows,
    ))


if __name__ == "__main__":
    main()
