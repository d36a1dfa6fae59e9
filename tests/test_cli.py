"""The command line: the models table, the error path, the entry points."""

import json
import subprocess
import sys

import pytest

from segstudio import cli
from segstudio.errors import CheckpointError


def test_models_json_lists_every_model_with_exact_counts(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == [
        "fcn32s", "fcn16s", "fcn8s", "deeplab_largefov", "deeplab_msc_largefov", "deconvnet", "unet", "ensemble",
    ]
    assert (rows["fcn8s"]["params_learned"], rows["fcn8s"]["params_fixed"]) == (134_362_751, 127_008)
    assert (rows["unet"]["params_learned"], rows["unet"]["in_channels"], rows["unet"]["num_classes"]) == (
        31_030_658, 1, 2,
    )
    assert rows["deeplab_largefov"]["params_learned"] == 20_505_429


def test_models_table_has_a_row_per_model(capsys):
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "learned", "params"]
    deconv = next(line for line in lines if line.startswith("deconvnet"))
    assert "251,805,653" in deconv


def test_user_error_is_one_line_without_traceback(capsys, monkeypatch):
    def failing(args):
        raise CheckpointError("weights do not fit", path="/data/model.safetensors")

    monkeypatch.setattr(cli, "cmd_models", failing)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == "segstudio: error: /data/model.safetensors: weights do not fit\n"


def test_no_command_without_a_display_says_so_in_one_line(capsys, monkeypatch):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("segstudio: error: no display found") and err.count("\n") == 1
    assert "QT_QPA_PLATFORM=offscreen" in err and "xvfb-run" in err


@pytest.mark.parametrize("entry", [[sys.executable, "-m", "segstudio"]])
def test_python_dash_m_runs_the_cli(entry):
    result = subprocess.run([*entry, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith("segstudio ")
