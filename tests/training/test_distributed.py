"""``segstudio train`` under torchrun: two CPU processes (gloo) share the data out."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch.distributed

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import write_indexed_png
from segstudio.models.checkpoint import load_checkpoint
from segstudio.synthetic import CLASS_COLORS, generate_sample
from segstudio.training.distributed import RECORD_SAMPLES_ENV, init_distributed, torchrun_environment

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()) or sys.platform == "win32",
    reason="needs torch.distributed with gloo on a POSIX system",
)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    for i in range(8):
        image, mask = generate_sample(200 + i, 48, 48)
        cv2.imwrite(str(folder / "images" / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_indexed_png(folder / "masks" / f"img{i}.png", mask, CLASS_COLORS)
    return folder


def test_train_runs_under_torchrun_with_two_cpu_processes(data, tmp_path):
    out, record = tmp_path / "run", tmp_path / "record"
    env = dict(os.environ)
    env.update({
        RECORD_SAMPLES_ENV: str(record),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    })
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "segstudio", "train", str(data), "--out", str(out),
        "--model", "unet", "--model-arg", "base_width=4", "--model-arg", "depth=2",
        "--model-arg", "batch_norm=true", "--model-arg", "padding=same",
        "--epochs", "2", "--crop", "48", "--batch-size", "2", "--val-fraction", "0.25", "--device", "cpu",
    ]
    # a session of its own, so that a hang can be ended with every process it started
    launcher = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        output, _ = launcher.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        output, _ = launcher.communicate()
        pytest.fail(f"torchrun did not finish in time:\n{output[-3000:]}")
    assert launcher.returncode == 0, output[-3000:]
    # nothing of the job is left running
    with pytest.raises(ProcessLookupError):
        os.killpg(launcher.pid, 0)

    model, meta = load_checkpoint(out / "last.safetensors")
    assert meta.architecture == "unet" and meta.arch_args["base_width"] == 4
    assert (out / "best.safetensors").is_file() and (out / "train_state.pt").is_file()
    history = json.loads((out / "history.json").read_text())
    assert history["processes"] == 2 and [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["epochs"][-1]["val_mean_iou"] is not None
    assert len(history["train_images"]) == 6 and len(history["val_images"]) == 2
    # rank 0 alone logs at INFO: one line per epoch, not two
    assert sum(line.startswith("INFO: epoch 1 (step 2)") for line in output.splitlines()) == 1, output[-3000:]

    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for epoch in ("1", "2"):
        first, second = (r["epochs"][epoch] for r in ranks)
        # 6 labelled images of 48 x 48 = 6 crops of 48 x 48 an epoch, rounded up to 2 steps of 2 crops on
        # each of 2 ranks: 4 crops each, no crop on both ranks, together all 8
        assert len(first) == len(second) == 4
        assert not set(first) & set(second) and sorted(first + second) == list(range(8))
    assert ranks[0]["epochs"]["1"] != ranks[0]["epochs"]["2"], "the sampler reshuffles every epoch"


def test_the_torchrun_environment_is_read_and_checked(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_environment() is None and init_distributed("cpu") is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_environment() == (1, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InvalidArgumentError, match="RANK=4, WORLD_SIZE=4"):
        torchrun_environment()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InvalidArgumentError, match="RANK='x'"):
        torchrun_environment()
    # a single process needs no process group
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert init_distributed("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InvalidArgumentError, match="not on MPS"):
        init_distributed("mps")
