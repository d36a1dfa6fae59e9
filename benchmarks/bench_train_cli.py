"""``segstudio train`` then ``segstudio predict`` on real data, as a new user runs them.

Run from the repository root::

    python benchmarks/bench_train_cli.py [--baseline-tree PATH] [--cases nuclei-half,nuclei-sparse,em]

Each case writes a data folder, trains a U-Net from scratch with nothing but
``--model unet`` and a run length, predicts the held-out pixels with
``segstudio predict`` and scores them. ``--baseline-tree`` runs the same
commands with another checkout of segstudio first (imported from that
folder by the same interpreter), so before and after print side by side
from one run on one machine. A checkout without ``--minutes`` gets ``--time-budget``
and an epoch count it cannot reach instead.

Cases (data: ``benchmarks/_realdata.py``):

* ``nuclei-half``: StarDist's 16-bit nuclei image, the left half fully
  labelled; Dice of the nucleus class on the right half after 2 minutes,
  next to Otsu's threshold on the right half;
* ``nuclei-sparse``: the same image with 15 nuclei and a ring of background
  around each labelled (about 12 % of the left half), 4 minutes;
* ``em``: ISBI 2012 slices 05-09 fully labelled, 5 minutes; pixel error on
  slices 10-19, next to answering "cell" everywhere and the U-Net paper's
  0.0611 (on the challenge's test stack, after ~10 h on a GPU with all 30
  slices and elastic deformation).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _realdata import REPO, dice, isbi_slices, otsu_threshold, sparse_labels, stardist_nuclei  # noqa: E402

CASES = ("nuclei-half", "nuclei-sparse", "em")
MINUTES = {"nuclei-half": 2.0, "nuclei-sparse": 4.0, "em": 5.0}


def write_folder(folder: Path, items: list[tuple[str, np.ndarray, np.ndarray | None]]) -> None:
    """``images/<name>.tif`` and, where labels are given, ``masks/<name>.png``."""
    import tifffile
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for name, image, labels in items:
        tifffile.imwrite(folder / "images" / f"{name}.tif", image)
        if labels is not None:
            Image.fromarray(labels).save(folder / "masks" / f"{name}.png")


# Runs segstudio's CLI from a given checkout. An editable install puts a finder
# on sys.meta_path that wins over PYTHONPATH, so it is taken off first.
_BOOTSTRAP = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f)]; "
    "sys.path.insert(0, sys.argv[1]); import segstudio; "
    "assert segstudio.__file__.startswith(sys.argv[1]), segstudio.__file__; "
    "from segstudio.cli import main; sys.exit(main(sys.argv[2:]))"
)


def _command(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", _BOOTSTRAP, str(tree), *args]


def segstudio(tree: Path, *args: str, log: Path) -> float:
    """Run the ``segstudio ARGS`` of the checkout *tree*; seconds taken."""
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ segstudio {' '.join(args)}\n")
        out.flush()
        completed = subprocess.run(_command(tree, *args), stdout=out, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"segstudio {args[0]} failed in {tree} (exit {completed.returncode}); see {log}")
    return time.monotonic() - started


def has_minutes(tree: Path) -> bool:
    text = subprocess.run(_command(tree, "train", "--help"), capture_output=True, text=True, check=False).stdout
    return "--minutes" in text


def train_and_predict(tree: Path, data: Path, predict_dir: Path, work: Path, minutes: float) -> dict:
    out, predicted = work / "run", work / "predicted"
    length = ["--minutes", f"{minutes:g}"] if has_minutes(tree) else [
        "--time-budget", f"{minutes * 60:g}", "--epochs", "1000000"]
    log = work / "log.txt"
    seconds = segstudio(tree, "train", str(data), "--model", "unet", "--out", str(out), "--val-fraction", "0",
                        *length, log=log)
    segstudio(tree, "predict", str(predict_dir), "--checkpoint", str(out / "last.safetensors"), "--out",
              str(predicted), log=log)
    return {"train_s": seconds, "predicted": predicted}


def read_prediction(folder: Path, name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(folder / f"{name}.png"))


def run_case(case: str, tree: Path, work: Path) -> dict:
    work.mkdir(parents=True)
    if case.startswith("nuclei"):
        nuclei = stardist_nuclei()
        if nuclei is None:
            return {"skipped": "pip install stardist (its data files; TensorFlow is not needed)"}
        image, truth = nuclei
        half = truth.shape[1] // 2
        if case == "nuclei-half":
            labels = truth.copy()
        else:
            labels = sparse_labels(truth[:, :half])
            labels = np.concatenate([labels, np.full((truth.shape[0], truth.shape[1] - half), 255, np.uint8)],
                                    axis=1)
        labels[:, half:] = 255
        write_folder(work / "data", [("nuclei", image, labels)])
        run = train_and_predict(tree, work / "data", work / "data" / "images", work, MINUTES[case])
        prediction = read_prediction(run["predicted"], "nuclei")[:, half:]
        threshold = image[:, half:] > otsu_threshold(image[:, half:])
        return {"train_s": run["train_s"], "labelled": float((labels != 255).mean()),
                "dice": dice(prediction, truth[:, half:]), "otsu": dice(threshold.astype(np.uint8), truth[:, half:])}
    slices = isbi_slices()
    train, held = slices[:5], slices[5:]
    write_folder(work / "data", [(name, image, labels) for name, image, labels in train])
    write_folder(work / "held", [(name, image, None) for name, image, _ in held])
    run = train_and_predict(tree, work / "data", work / "held" / "images", work, MINUTES[case])
    errors = [float((read_prediction(run["predicted"], name) != labels).mean()) for name, _, labels in held]
    cell = float(np.mean([(labels != 0).mean() for _, _, labels in held]))
    return {"train_s": run["train_s"], "pixel_error": float(np.mean(errors)), "cell_everywhere": cell}


def describe(case: str, result: dict) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    if case.startswith("nuclei"):
        return (f"Dice {result['dice']:.3f} (Otsu {result['otsu']:.3f}) after {result['train_s']:.0f} s "
                f"[{100 * result['labelled']:.0f} % of the image labelled]")
    return (f"pixel error {result['pixel_error']:.4f} (cell everywhere {result['cell_everywhere']:.4f}, "
            f"U-Net paper 0.0611) after {result['train_s']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, help="another segstudio checkout to run first")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}")
    sys.path.insert(0, str(REPO))
    from _measure import machine

    print(f"machine: {machine()}")
    trees = ([("baseline", args.baseline_tree.resolve())] if args.baseline_tree else []) + [("this", REPO)]
    with tempfile.TemporaryDirectory(prefix="segstudio-bench-cli-") as tmp:
        for case in cases:
            for label, tree in trees:
                result = run_case(case, tree, Path(tmp) / case / label)
                print(f"{case:14s} {label:9s} {describe(case, result)}", flush=True)


if __name__ == "__main__":
    main()
