"""What every row and manifest is made of: the schema version, timestamps, JSON-plain values,
and the fields every row has.

One place for each, so that a bench row, a training row and the row an executor writes for a
cell that produced none agree on their common fields (docs/results-schema.md), and every
file mixbench writes is JSON that any reader parses (no NaN, no numpy scalars, no tuples).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

# plain lives in core (the registry needs it; core builds on nothing above it).
from mixbench.core.plain_json import plain as plain

# The row and manifest schema; rows of every version so far load (mixbench.report.results).
SCHEMA_VERSION = 1


def utc_now() -> str:
    """Now, as the ISO 8601 UTC timestamp every row and manifest records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def iso_time(timestamp: float) -> str:
    """A ``time.time()`` value as the same kind of timestamp as `utc_now`."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


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
