"""pydensecrf2 vs the PyTorch permutohedral-lattice CRF, side by side.

Run from the repository root::

    python benchmarks/bench_crf_torch.py [--sizes 512 1024] [--classes 3 21]
                                         [--iterations 10] [--repeats 1] [--device cpu]
                                         [--threads 1 2]

Every (backend, size, classes) case runs in a fresh subprocess, so the peak
resident set size it reports is that backend's own (``ru_maxrss`` of the
worker; "+RSS" is the growth over the worker's RSS once its inputs were
made, i.e. what the CRF itself allocated at its peak). The input is a real
photograph (scikit-image's astronaut, resized to the size) with smooth,
image-correlated class probabilities like an upsampled network output.
Time is the median wall time of ``--repeats`` runs after a small warm-up
run; "vs ref" is pydensecrf2's time over this one's (above 1: faster);
label agreement is the fraction of pixels whose label matches
pydensecrf2's. pydensecrf2 runs on one thread; the torch backend runs once
per ``--threads`` count, because its multi-threaded kernels lose badly when
another process holds the cores (measure on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_inputs(size: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo resized to ``size`` and smooth model-like probabilities."""
    path = Path(cv2.__file__).resolve().parents[1] / "skimage" / "data" / "astronaut.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    image = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 2.0, (size // 32, size // 32, n_classes)).astype(np.float32)
    logits = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, n_classes)
    logits += 0.02 * image.mean(axis=2, keepdims=True) * rng.normal(0.0, 1.0, n_classes).astype(np.float32)
    logits -= logits.max(axis=2, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=2, keepdims=True)
    return np.ascontiguousarray(image), np.ascontiguousarray(probabilities.transpose(2, 0, 1), dtype=np.float32)


def worker(args: argparse.Namespace) -> None:
    """One backend on one case; prints a JSON line and saves the labels."""
    from segstudio.refine.dense_crf import CRFParams, refine
    from segstudio.refine.torch_crf import refine_torch

    if args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)

        def run(image: np.ndarray, probabilities: np.ndarray, params: CRFParams):
            result = refine_torch(image, probabilities, params, device=args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return result
    else:
        def run(image: np.ndarray, probabilities: np.ndarray, params: CRFParams):
            return refine(image, probabilities, params)

    params = CRFParams(iterations=args.iterations)
    warm_image, warm_probabilities = make_inputs(64, args.classes)
    run(warm_image, warm_probabilities, params)
    image, probabilities = make_inputs(args.size, args.classes)
    base_rss = _rss_mb()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = run(image, probabilities, params)
        times.append(time.perf_counter() - started)
    np.save(args.labels_out, result.labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    print(json.dumps({"time_s": statistics.median(times), "peak_rss_mb": peak, "extra_rss_mb": peak - base_rss}))


def _run_case(backend: str, size: int, n_classes: int, threads: int, args: argparse.Namespace,
              labels_out: Path) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--backend", backend, "--size", str(size),
        "--classes-one", str(n_classes), "--iterations", str(args.iterations),
        "--repeats", str(args.repeats), "--device", args.device, "--threads-one", str(threads),
        "--labels-out", str(labels_out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {size} {n_classes} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 21])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="torch CPU thread counts to run (pydensecrf2 is single-threaded)")
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["pydensecrf", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--classes-one", dest="classes_one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads-one", dest="threads_one", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.classes = args.classes_one
        args.threads = args.threads_one
        worker(args)
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"(load average {load:.1f} at start), torch device {args.device}, "
          f"{args.iterations} iterations, median of {args.repeats}")
    header = (f"{'size':>6} {'C':>3} {'backend':>18} | {'time s':>7} {'peak MB':>8} {'+RSS MB':>8} | "
              f"{'vs ref':>7} {'agree %':>8}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "ref.npy"
        new_path = Path(tmp) / "new.npy"
        for size in args.sizes:
            for n_classes in args.classes:
                ref = _run_case("pydensecrf", size, n_classes, 1, args, ref_path)
                print(f"{size:>6} {n_classes:>3} {'pydensecrf2':>18} | {ref['time_s']:>7.3f} "
                      f"{ref['peak_rss_mb']:>8.0f} {ref['extra_rss_mb']:>8.0f} | {'1.00x':>7} {100.0:>8.3f}",
                      flush=True)
                for threads in args.threads:
                    new = _run_case("torch", size, n_classes, threads, args, new_path)
                    agreement = float((np.load(ref_path) == np.load(new_path)).mean())
                    label = f"torch {args.device} x{threads}"
                    print(f"{size:>6} {n_classes:>3} {label:>18} | {new['time_s']:>7.3f} "
                          f"{new['peak_rss_mb']:>8.0f} {new['extra_rss_mb']:>8.0f} | "
                          f"{ref['time_s'] / new['time_s']:>6.2f}x {100 * agreement:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
