"""``segstudio predict`` meets crafted files: one line each, the other inputs still done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from tests.io.test_images import png_declaring, sparse_tiff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkpoint(tmp_path):
    model = get_model("unet", num_classes=2, in_channels=3, base_width=4, depth=2, padding="same")
    return save_checkpoint(tmp_path / "model.safetensors", model, make_meta(model))


def _segstudio(*args: str | Path) -> subprocess.CompletedProcess:
    """The real command in its own process, with the machine's own memory limit."""
    env = {k: v for k, v in os.environ.items() if k != "SEGSTUDIO_MEMORY_LIMIT"}
    return subprocess.run([sys.executable, "-m", "segstudio", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_predict_refuses_huge_declared_images_and_segments_the_others(tmp_path, checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "c"):
        cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 255, (40, 52, 3), dtype=np.uint8))
    (folder / "b_bomb.tif").write_bytes(sparse_tiff(100000, 100000))
    (folder / "d_bomb.png").write_bytes(png_declaring(200000, 200000, depth=16))
    out = tmp_path / "out"
    done = _segstudio("predict", folder, "--checkpoint", checkpoint, "--out", out, "--device", "cpu")
    assert done.returncode == 1, done.stderr  # some inputs failed
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert "Traceback" not in done.stderr and "tifffile" not in done.stderr
    for name, size in (("b_bomb.tif", "100000 x 100000"), ("d_bomb.png", "200000 x 200000")):
        lines = [line for line in done.stderr.splitlines() if name in line]
        assert len(lines) == 1, done.stderr
        assert str(folder / name) in lines[0] and size in lines[0] and "more than the limit of" in lines[0]
    assert "2 of 4 input(s) failed" in done.stderr


def test_predict_with_a_crafted_checkpoint_says_one_line(tmp_path, checkpoint):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        data = json.loads(handle.metadata()["segstudio"])
    data["arch_args"].update(base_width=4096, depth=4, weights_backbone="imagenet")
    save_file(tensors, str(checkpoint), metadata={"segstudio": json.dumps(data)})
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    done = _segstudio("predict", tmp_path / "a.png", "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert done.returncode == 1  # cli.EXIT_USER_ERROR
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"segstudio: error: {checkpoint}: its unet model (")
    assert "more than the limit of" in done.stderr
