"""Values made safe for JSON files (histories, version metadata)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become ``None``, tuples lists,
    paths strings, mapping keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
