"""What every row and manifest is made of: the schema version, timestamps, JSON-plain values,
and the fields every row has.

One place for each, so that a bench row, a training row and the row an executor writes for a
cell that produced none agree on their common fields (docs/results-schema.md), and every
file mixbench writes is JSON that any reader parses (no NaN, no numpy scalars, no tuples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The row and manifest schema; rows of every version so far load (mixbench.report.results).
SCHEMA_VERSION = 1


def utc_now() -> str:
    """Now, as the ISO 8601 UTC timestamp every row and manifest records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def iso_time(timestamp: float) -> str:
    """A ``time.time()`` value as the same kind of timestamp as `utc_now`."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


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


def row_skeleton(
    kind: str,
    key: str | None,
    config: Mapping[str, Any],
    run_id: str | None,
    *,
    started_at: str | None = None,
) -> dict[str, Any]:
    """The fields every row has, for a cell with status ``ok`` and nothing measured yet; a
    kind adds its own fields (a bench row's samples, a training row's curves file)."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": kind,
        "key": key,
        "status": "ok",
        "reason": None,
        "config": dict(config),
        "metrics": {},
        "runtime": {},
        "started_at": started_at or utc_now(),
        "duration_s": None,
        "run_id": run_id,
    }
