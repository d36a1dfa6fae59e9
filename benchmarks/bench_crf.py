"""pydensecrf2 vs the torch dense CRF: CPU (same run) and CUDA, time, memory, label agreement.

Run from the repository root::

    python benchmarks/bench_crf.py [--sizes 512 1024 2048] [--classes 3 21]
                                   [--iterations 10] [--repeats 3] [--threads 1 2]
                                   [--devices cpu cuda] [--tile-bytes 268435456]

For every size and class count it runs pydensecrf2 (the reference, compiled
C++ on one CPU thread), then the PyTorch permutohedral-lattice CRF on the CPU
once per ``--threads`` count and on every other ``--devices`` entry (CUDA by
default when torch sees a GPU). With ``--tile-bytes`` it adds rows for the
tiled path of :func:`segstudio.refine.crf.refine_steps` at that memory budget
(labels only, ``keep_probabilities=False``, as the studio's preview runs it):
one for pydensecrf2 and one per torch device (the CPU with the largest
``--threads`` count).

Every case runs in a fresh subprocess, so its peak resident set size is that
case's own. The input is a real photograph (scikit-image's astronaut, resized
to the size) with smooth, image-correlated class probabilities like an
upsampled network output. pydensecrf2's labels on the same input are the
reference: the worker of every other case reads them from a temporary file
and reports the fraction of pixels whose label matches. Measure on an idle
machine: torch's multi-threaded kernels lose badly when another process holds
the cores (the load average at start is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

# Nothing here imports torch at module level (``_measure`` does): a
# pydensecrf2 worker without torch is ~480 MB smaller, and its peak RSS should
# be pydensecrf2's own.

COLUMNS = """\
columns:
  wall s     median wall time of --repeats runs after a warm-up run (on CUDA
             synchronised before the clock starts and after the run ends)
  setup s    wall minus iterations x ms/iter: unary, lattice building, copying
             the result out (with tiles: summed over the tiles)
  ms/iter    one mean-field iteration (mean of the gaps between iterations;
             on CUDA each iteration is synchronised to be timed)
  peak MB    peak RSS of the worker process (VmHWM; imports included:
             torch adds ~0.5 GB that whole-image pydensecrf2 workers do not load)
  +RSS MB    peak RSS over the RSS once the inputs were made: what the CRF
             itself allocated in host memory at its peak
  GPU MB     torch.cuda.max_memory_allocated over the timed runs (CUDA only)
  x ref      pydensecrf2's wall time over this row's (above 1: faster)
  agree %    pixels whose label equals pydensecrf2's whole-image label
  tiles      pieces the CRF ran in (1: the whole image)"""

HEADER = (f"{'size':>9} {'C':>3} {'backend':<22} | {'wall s':>7} {'setup s':>7} {'ms/iter':>8} | "
          f"{'peak MB':>7} {'+RSS MB':>7} {'GPU MB':>7} | {'x ref':>7} {'agree %':>8} {'tiles':>5}")


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in MB.

    VmHWM belongs to this process's address space, which ``exec`` made new;
    ``ru_maxrss`` would not do: Linux carries the parent's peak across fork
    and exec, so every worker would report at least the parent's RSS.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def astronaut_path() -> Path:
    """scikit-image's astronaut photo, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: it provides the test photograph")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"


def make_inputs(size: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo resized to ``size`` (RGB uint8) and smooth model-like
    ``C x H x W`` float32 probabilities correlated with its brightness."""
    path = astronaut_path()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    image = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(seed)
    coarse_size = max(2, size // 32)
    coarse = rng.normal(0.0, 2.0, (coarse_size, coarse_size, n_classes)).astype(np.float32)
    logits = np.empty((size, size, n_classes), dtype=np.float32)
    for c in range(n_classes):  # cv2.resize takes at most 512 channels at once; go class by class
        logits[:, :, c] = cv2.resize(coarse[:, :, c], (size, size), interpolation=cv2.INTER_CUBIC)
    logits += 0.02 * image.mean(axis=2, keepdims=True) * rng.normal(0.0, 1.0, n_classes).astype(np.float32)
    logits -= logits.max(axis=2, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=2, keepdims=True)
    return np.ascontiguousarray(image), np.ascontiguousarray(probabilities.transpose(2, 0, 1), dtype=np.float32)


# --------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> None:
    """One case in this process; prints one JSON line, saves the labels if asked."""
    from segstudio.refine.dense_crf import CRFParams
    from segstudio.tasks import Progress, run_to_completion

    cuda = args.backend == "torch" and args.device.startswith("cuda")
    sync = None
    if args.backend == "torch" or args.tile_bytes_one:
        import torch  # the tiled path resolves its device with torch even for pydensecrf2

        torch.set_num_threads(args.threads_one)
        if cuda:
            sync = lambda: torch.cuda.synchronize(args.device)  # noqa: E731

    if args.tile_bytes_one:
        from segstudio.refine.crf import refine_steps

        def steps(image, probabilities, params):
            return refine_steps(image, probabilities, params, backend=args.backend,
                                device=args.device if args.backend == "torch" else None,
                                tile_bytes=args.tile_bytes_one, keep_probabilities=False)
    elif args.backend == "torch":
        from segstudio.refine.torch_crf import refine_torch_steps

        def steps(image, probabilities, params):
            return refine_torch_steps(image, probabilities, params, device=args.device)
    else:
        from segstudio.refine.dense_crf import refine_steps as pydensecrf_steps

        def steps(image, probabilities, params):
            return pydensecrf_steps(image, probabilities, params)

    params = CRFParams(iterations=args.iterations)

    def timed(image, probabilities):
        stamps: list[tuple[float, Progress]] = []

        def note(progress: Progress) -> None:
            if sync is not None:
                sync()
            stamps.append((time.perf_counter(), progress))

        if sync is not None:
            sync()
        started = time.perf_counter()
        result = run_to_completion(steps(image, probabilities, params), note)
        if sync is not None:
            sync()
        wall = time.perf_counter() - started
        # iteration stamps only (a TileProgress repeats its tile's last count);
        # a gap counts when both ends are iterations of the same tile
        iterations = [(t, p.done) for t, p in stamps if type(p) is Progress]
        gaps = [b - a for (a, da), (b, db) in zip(iterations, iterations[1:])
                if db == da + 1 and (db - 1) % params.iterations != 0]
        per_iteration = sum(gaps) / len(gaps) if gaps else float("nan")
        tiles = max(1, (stamps[-1][1].total or params.iterations) // params.iterations) if stamps else 1
        setup = wall - per_iteration * params.iterations * tiles
        return wall, setup, per_iteration, tiles, result.labels

    # warm-up: on the CPU a small image (the code paths and thread pools,
    # without doubling the case's time); on CUDA the full size, cheap there,
    # so kernels, the allocator and the context are all warm
    if not cuda:
        timed(*make_inputs(128, args.classes_one))
    image, probabilities = make_inputs(args.size, args.classes_one)
    if cuda:
        timed(image, probabilities)
        torch.cuda.reset_peak_memory_stats(args.device)
        gpu_base = torch.cuda.memory_allocated(args.device)
    base_rss = _status_mb("VmRSS")
    runs = [timed(image, probabilities) for _ in range(args.repeats)]
    peak_rss = _status_mb("VmHWM")
    gpu_peak = (torch.cuda.max_memory_allocated(args.device) - gpu_base) / 2**20 if cuda else None
    labels = runs[-1][4]
    del image, probabilities
    if args.labels_out:
        np.save(args.labels_out, labels)
    agreement = None
    if args.reference:
        reference = np.load(args.reference)
        agreement = float((reference == labels).mean()) if reference.shape == labels.shape else None
    print(json.dumps({
        "wall_s": statistics.median(r[0] for r in runs),
        "setup_s": statistics.median(r[1] for r in runs),
        "per_iteration_s": statistics.median(r[2] for r in runs),
        "tiles": runs[-1][3],
        "peak_rss_mb": peak_rss,
        "extra_rss_mb": peak_rss - base_rss,
        "gpu_peak_mb": gpu_peak,
        "agreement": agreement,
    }))


# --------------------------------------------------------------------------- parent


def run_case(args: argparse.Namespace, *, backend: str, device: str, size: int, n_classes: int,
             threads: int, tile_bytes: int = 0, labels_out: Path | None = None,
             reference: Path | None = None) -> dict:
    """Run one case in a fresh interpreter; its JSON result, or ``{"error": ...}``."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--backend", backend, "--device", device,
        "--size", str(size), "--classes-one", str(n_classes), "--threads-one", str(threads),
        "--iterations", str(args.iterations), "--repeats", str(args.repeats),
        "--tile-bytes-one", str(tile_bytes),
    ]
    if labels_out is not None:
        command += ["--labels-out", str(labels_out)]
    if reference is not None:
        command += ["--reference", str(reference)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:160]}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"unreadable worker output: {lines[-1][:160]}"}


def _number(value, fmt: str, width: int, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value * scale:>{width}{fmt}}"


def format_row(size: int, n_classes: int, name: str, result: dict, ref_wall: float | None) -> str:
    lead = f"{size:>4}x{size:<4} {n_classes:>3} {name:<22} | "
    if "error" in result:
        return lead + f"failed: {result['error']}"
    speed = (f"{ref_wall / result['wall_s']:>6.2f}x" if ref_wall and result["wall_s"] > 0
             else f"{'-':>7}")
    agreement = 1.0 if name == "pydensecrf2" else result.get("agreement")
    return (lead
            + f"{_number(result['wall_s'], '.3f', 7)} {_number(result['setup_s'], '.3f', 7)} "
            + f"{_number(result['per_iteration_s'], '.1f', 8, 1e3)} | "
            + f"{_number(result['peak_rss_mb'], '.0f', 7)} {_number(result['extra_rss_mb'], '.0f', 7)} "
            + f"{_number(result['gpu_peak_mb'], '.0f', 7)} | "
            + f"{speed} {_number(agreement, '.3f', 8, 100.0)} {result['tiles']:>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="square image sizes, px")
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 21], help="class counts")
    parser.add_argument("--iterations", type=int, default=10, help="mean-field iterations")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is shown)")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="torch CPU thread counts, one row each (pydensecrf2 is single-threaded)")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="torch devices (default: cpu, and cuda when torch sees a GPU)")
    parser.add_argument("--tile-bytes", type=int, default=None,
                        help="also run the tiled path of segstudio.refine.crf.refine_steps at this budget")
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["pydensecrf", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--classes-one", dest="classes_one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads-one", dest="threads_one", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--tile-bytes-one", dest="tile_bytes_one", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.repeats < 1 or args.iterations < 1:
        parser.error("--repeats and --iterations must be at least 1")
    if min(args.sizes) < 16 or min(args.classes) < 2 or min(args.threads) < 1:
        parser.error("sizes must be at least 16, classes at least 2, threads at least 1")
    if args.tile_bytes is not None and args.tile_bytes <= 0:
        parser.error("--tile-bytes must be positive")

    import torch
    from _measure import machine

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    try:
        from importlib.metadata import version

        pydensecrf_version = version("pydensecrf2")
    except Exception:  # noqa: BLE001 - only for the header
        pydensecrf_version = "?"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {machine()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, pydensecrf2 {pydensecrf_version}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    print(f"input: {astronaut_path().name} resized, smooth model-like probabilities; "
          f"{args.iterations} iterations, DeepLab-v1 CRF settings, median of {args.repeats} after a warm-up; "
          f"torch devices {', '.join(devices)}"
          + (f"; tiled rows at {args.tile_bytes} bytes ({args.tile_bytes / 2**20:.0f} MiB) per tile"
             if args.tile_bytes else ""))
    print(COLUMNS)
    print()
    print(HEADER)
    print("-" * len(HEADER), flush=True)

    max_threads = max(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_crf_") as tmp:
        reference = Path(tmp) / "reference.npy"
        for size in args.sizes:
            for n_classes in args.classes:
                reference.unlink(missing_ok=True)
                ref = run_case(args, backend="pydensecrf", device="cpu", size=size, n_classes=n_classes,
                               threads=1, labels_out=reference)
                print(format_row(size, n_classes, "pydensecrf2", ref, None), flush=True)
                ref_wall = ref.get("wall_s")
                ref_path = reference if reference.exists() else None

                cases = []  # (name, device, threads, tile_bytes)
                for device in devices:
                    if device == "cpu":
                        cases += [(f"torch cpu x{threads}", "cpu", threads, 0) for threads in args.threads]
                    else:
                        cases.append((f"torch {device}", device, max_threads, 0))
                if args.tile_bytes:
                    cases.append(("pydensecrf2 tiled", "cpu", 1, args.tile_bytes))
                    for device in devices:
                        threads = max_threads
                        name = f"torch {device}{f' x{threads}' if device == 'cpu' else ''} tiled"
                        cases.append((name, device, threads, args.tile_bytes))
                for name, device, threads, tile_bytes in cases:
                    backend = "pydensecrf" if name.startswith("pydensecrf2") else "torch"
                    result = run_case(args, backend=backend, device=device, size=size, n_classes=n_classes,
                                      threads=threads, tile_bytes=tile_bytes, reference=ref_path)
                    print(format_row(size, n_classes, name, result, ref_wall), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
