"""Cells: the unit of measurement, with a stable key.

A cell is one measurement — (kind, mixer, options, optimizer, task, tokens, batch, device,
dtype, seed, ...) as a plain dict. Its key is a hash of that dict in canonical JSON, so the
same configuration always has the same key: a sweep can resume by skipping keys it already
has, and a comparison can pair cells across runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixbench.errors import UsageError

# Fields that describe how a run is conducted, not what is measured; they do not enter the key.
NON_IDENTITY_FIELDS = frozenset({"out", "json", "quiet", "timeout", "run_id"})


def _canonical(value: Any) -> Any:
    """Numbers as JSON would compare them: 3.0 and 3 are one setting (a TOML sweep file
    says ``lr = 1`` where the command line gives 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def cell_key(kind: str, config: Mapping[str, Any]) -> str:
    identity = {k: _canonical(v) for k, v in config.items() if k not in NON_IDENTITY_FIELDS}
    blob = json.dumps({"kind": kind, "config": identity}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One measurement to make."""

    kind: str  # "bench" | "train"
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return cell_key(self.kind, self.config)

    def label(
        self, fields: Sequence[str] = ("mixer", "optimizer", "task", "tokens", "seed", "lr")
    ) -> str:
        parts = [
            f"{name}={self.config[name]}" for name in fields if self.config.get(name) is not None
        ]
        return f"{self.kind}[" + " ".join(parts) + "]"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "config": dict(self.config)}


def expand_grid(
    fixed: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """Every combination of ``axes`` (in the order given), each merged into ``fixed``."""
    names = list(axes)
    for name in names:
        if not axes[name]:
            raise UsageError(f"{name}: needs at least one value")
    configs = []
    for values in itertools.product(*(axes[name] for name in names)):
        config = dict(fixed)
        config.update(zip(names, values, strict=True))
        configs.append(config)
    return configs


def parse_int_list(text: str, what: str) -> list[int]:
    """``"256,1024"`` -> [256, 1024]; a clear error for anything else."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                f"{what}: {part!r} is not a whole number (give e.g. 256,1024)"
            ) from None
        if value < 1:
            raise UsageError(f"{what} {value}: out of range; accepted: a whole number >= 1")
        values.append(value)
    if not values:
        raise UsageError(f"{what}: give at least one value (e.g. 256,1024)")
    return values


def parse_tokens(text: str) -> list[int]:
    return parse_int_list(text, "--tokens")


def grid_for_tokens(tokens: int, dims: int) -> tuple[int, ...]:
    """The token grid a count is laid out on.

    1-D: ``(N,)``. 2-D: the square ``(s, s)`` when N is a perfect square; otherwise the most
    nearly square factorisation ``(h, w)`` with h <= w and h * w == N (a prime N gives
    ``(1, N)``). The layout is recorded in every row, so nothing is hidden.
    """
    if dims == 1:
        return (tokens,)
    if dims != 2:
        raise UsageError(f"grids of {dims} dimensions are not supported; use 1 or 2")
    root = math.isqrt(tokens)
    for h in range(root, 0, -1):
        if tokens % h == 0:
            return (h, tokens // h)
    return (1, tokens)


def unique_cells(cells: Iterable[Cell]) -> list[Cell]:
    """Cells in order, each key once."""
    seen: set[str] = set()
    out = []
    for cell in cells:
        if cell.key not in seen:
            seen.add(cell.key)
            out.append(cell)
    return out
