"""The built application starts offscreen, opens the sample and quits with 0.

Marked ``packaging``: packaging/build.sh runs it against the bundle
(``SEGSTUDIO_APP=dist/segstudio/segstudio``); the default test run leaves it
out. Without SEGSTUDIO_APP it checks the ``segstudio`` of this environment.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segstudio.resources import SAMPLE, resource_path

pytestmark = pytest.mark.packaging


def _app() -> str:
    app = os.environ.get("SEGSTUDIO_APP") or str(Path(sys.executable).with_name("segstudio"))
    if not Path(app).is_file():
        pytest.fail(f"no segstudio application at {app}; build it with packaging/build.sh")
    return app


def test_app_opens_the_sample_offscreen_and_quits_cleanly(tmp_path):
    images = tmp_path / "sample"
    shutil.copytree(resource_path(*SAMPLE) / "images", images)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run([_app(), "open", str(images), "--exit-after-open"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "opened 12 image(s)" in result.stdout
    assert (images / "segstudio_project" / "project.json").is_file()
