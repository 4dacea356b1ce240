"""JSON-plain values: what every file mixbench writes is made of.

Here in ``core`` because the registry describes plugins' metadata with it and core builds on
nothing above it; ``mixbench.runs.rows`` re-exports it beside the rest of the row format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """A JSON-plain copy of ``value``: mappings with string keys, lists for tuples and sets
    (sets sorted), Python scalars for numpy, pandas and one-element torch values, ``None``
    for NaN and infinities (JSON has neither), strings for paths; anything else as its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy, pandas and torch scalars
    if callable(item):
        try:
            return plain(item())
        except (ValueError, RuntimeError):  # an array of more than one element
            pass
    return repr(value)
