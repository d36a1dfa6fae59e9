"""Where the bundled files (sample images, demo model, icons) live.

In a source checkout or an editable install they are in ``resources/`` at
the repository root; a desktop bundle puts the same folder next to the
package (``segstudio/_resources``).
"""

from __future__ import annotations

from pathlib import Path

from segstudio.errors import UnreadableInputError

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE / "_resources", _PACKAGE.parent / "resources")

DEMO_MODEL = ("models", "demo_unet.safetensors")
SAMPLE = ("sample",)


def resources_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise UnreadableInputError(
        "the bundled resources folder is missing; reinstall segstudio from its source folder "
        "(pip install -e .)",
        path=_CANDIDATES[-1],
    )


def resource_path(*parts: str) -> Path:
    """A bundled file or folder; a clear error if it is missing."""
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise UnreadableInputError("a bundled resource is missing; reinstall segstudio", path=path)
    return path
