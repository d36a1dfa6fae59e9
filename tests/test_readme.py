"""README.md as a newcomer reads it: the Quick start holds exactly the two
commands CI runs, and every block marked runnable runs as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(marker: str) -> list[str]:
    pattern = re.compile(rf"<!-- {marker} -->\s*```bash\n(.*?)```", re.S)
    return [match.group(1) for match in pattern.finditer(README)]


def test_quick_start_has_exactly_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"```bash\n(.*?)```", quick, re.S)
    run, test = _blocks("quickstart:run"), _blocks("quickstart:test")
    assert len(run) == len(test) == 1
    assert run[0].strip().endswith("segstudio demo")
    assert test[0].strip().endswith("-m pytest")
    assert fenced[:2] == [run[0], test[0]]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "quickstart:test" in script and "bash -euo pipefail -c" in script


RUNNABLE = [line.strip() for block in _blocks("runnable") for line in block.splitlines() if line.strip()]


def test_runnable_readme_commands_work_as_written_in_order(tmp_path):
    """Run every runnable line, in README order, in one folder (as a reader
    following along would)."""
    assert any("predict" in c for c in RUNNABLE) and any("evaluate" in c for c in RUNNABLE)
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for command in RUNNABLE:
        # the README's .venv is the environment running these tests
        argv = [str(bindir / part[len(".venv/bin/"):]) if part.startswith(".venv/bin/") else part
                for part in shlex.split(command)]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        if " evaluate " in command:
            mean_iou = float(re.search(r"^mean\s+([0-9.]+)", result.stdout, re.M).group(1))
            assert mean_iou > 0.85, result.stdout
