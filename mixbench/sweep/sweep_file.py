"""Sweep files: one TOML file becomes a validated list of cells before anything runs.

A sweep file holds one or more grids of ``bench`` and/or ``train`` cells::

    name = "mixers-small"        # run directory prefix (default: the file's stem)
    executor = "subprocess"      # default executor (``--executor`` wins)
    max_parallel = 2             # default ``--max-parallel``
    timeout = 600                # seconds per cell (also per grid); default: none

    [defaults]                   # applied to every grid whose kind has the key
    device = "cpu"

    [[grid]]
    kind = "train"
    mixer = ["attention", "pooling"]        # a list is an axis of the product
    optimizer = "adamw"                     # a scalar is fixed
    seed = [0, 1]
    steps = 100
    mixer_option = {pooling = {pool_size = 5}}  # --mixer-option pooling.pool_size=5; a
                                                # list of tables is an axis of option sets
    exclude = [{mixer = "pooling", seed = 1}]             # drop matching combinations
    include = [{mixer = "mlp", seed = 0}]                 # add: the grid with these keys

Every option of ``mixbench bench`` / ``mixbench train`` is a key, spelled as the flag
(``batch-size``) or with underscores (``batch_size``); the keys are read from the commands'
own signatures (``mixbench.sweep.grid_table`` reads one grid table), and each combination is planned
by the command's own planner, so a cell from a sweep has exactly the key the same settings
give on the command line. A sweep's identity is the set of its cell keys (`sweep_hash`): a
run directory records it, and resuming with a file that now means other cells is refused.

Validation happens in two passes, both before the first cell runs. The first needs no torch:
TOML syntax, keys, value types, the names of mixers, optimizers, tasks and executors and
their option keys. Names come from a small cache of the registry (``names.json`` in the
user cache directory, keyed on the installed plugins' entry points and module files), so a
typo fails in well under a second instead of paying the ~3 s plugin import. The second
pass runs the commands' planners (options converted, task data built, models checked).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixbench.core.namecache import NameCheck, known_names
from mixbench.errors import UsageError
from mixbench.runs.cell_kinds import cell_kind, cell_kinds
from mixbench.runs.driver import PlannedCell
from mixbench.sweep.grid_table import (
    KeySpec,
    Point,
    SweepReader,
    aliases,
    check_option_keys,
    combinations,
    default_timeout,
    option_keys,
    sweep_error,
    unknown_key_error,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_LEVEL = ("name", "executor", "max_parallel", "timeout", "defaults", "grid")


# -- the file as a whole ---------------------------------------------------------------------


@dataclass
class SweepFile:
    """A sweep file after the first pass: checked, expanded, not yet planned."""

    source: str  # the file, as messages name it
    text: str
    data: dict[str, Any]
    name: str
    executor: str | None
    max_parallel: int | None
    points: list[tuple[Point, float | None]]

    def plan(self) -> Sweep:
        """The second pass: each combination through its command's planner."""
        from mixbench.core.plugin_loader import import_string

        planned: dict[str, PlannedCell] = {}
        duplicates = 0
        planners: dict[str, Callable[..., Any]] = {}
        for point, timeout in self.points:
            kind = point.grid.kind
            if kind not in planners:
                planners[kind] = import_string(cell_kind(kind).planner)
            try:
                produced = planners[kind](**point.cli())
            except UsageError as exc:
                raise sweep_error(
                    self.source, f"{point.origin} ({point.describe()})", str(exc)
                ) from None
            cells, settings = produced if isinstance(produced, tuple) else (produced, {})
            if timeout is None:
                timeout = default_timeout(kind)
            for cell in cells:
                if cell.key in planned:
                    duplicates += 1
                    continue
                planned[cell.key] = PlannedCell(cell, dict(settings), timeout, point.origin)
        return Sweep(self, list(planned.values()), duplicates)


@dataclass
class Sweep:
    """Every cell a sweep file asks for, each once, in file order."""

    file: SweepFile
    cells: list[PlannedCell]
    duplicates: int  # combinations that gave a cell another combination already gave

    @property
    def keys(self) -> list[str]:
        return [p.cell.key for p in self.cells]

    @property
    def hash(self) -> str:
        return sweep_hash(self.keys)

    def manifest_entry(self, path: str | None) -> dict[str, Any]:
        """What a run directory's manifest records about the sweep, for resuming."""
        return {
            "file": path,
            "text": self.file.text,
            "config": self.file.data,
            "hash": self.hash,
            "cells": [
                {
                    "key": p.cell.key,
                    "kind": p.cell.kind,
                    "label": p.cell.label(),
                    "origin": p.origin,
                }
                for p in self.cells
            ],
        }


def sweep_hash(keys: Iterable[str]) -> str:
    """A sweep's identity: the set of cells it means (not the file's spelling)."""
    return hashlib.sha256(json.dumps(sorted(keys)).encode()).hexdigest()[:16]


def parse_sweep(text: str, source: str, *, names: NameCheck | None = None) -> SweepFile:
    """Check a sweep file's text and expand its grids; imports no torch."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise sweep_error(source, "", f"not valid TOML: {exc}") from None
    every_spelling = {
        alias: specs[name].key
        for specs in map(_safe_specs, cell_kinds())
        for alias, name in aliases(specs).items()
    }
    for key in data:
        if key in every_spelling:
            raise sweep_error(
                source, key, "cell options go in a grid table, or in the defaults table"
            )
        if key not in TOP_LEVEL:
            raise unknown_key_error(source, "", key, TOP_LEVEL)
    names = names or NameCheck(known_names())
    reader = SweepReader(source, names)
    grids_raw = data.get("grid")
    if not isinstance(grids_raw, list) or not grids_raw:
        raise sweep_error(
            source,
            "grid",
            "no grids: add at least one grid table (a [[grid]] "
            'header followed by kind = "bench" or "train")',
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise sweep_error(source, "defaults", "expected a table")
    for key in defaults:
        if key not in every_spelling:
            raise unknown_key_error(
                source, f"defaults.{key}", key, set(every_spelling.values()), every_spelling
            )
    executor = data.get("executor")
    if executor is not None:
        if not isinstance(executor, str):
            raise sweep_error(source, "executor", f"expected a name, got {executor!r}")
        try:
            names.require("executor", executor)
        except ValueError as exc:
            raise sweep_error(source, "executor", str(exc)) from None
    max_parallel = data.get("max_parallel")
    if max_parallel is not None and (
        isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
    ):
        raise sweep_error(
            source, "max_parallel", f"expected a whole number >= 1, got {max_parallel!r}"
        )
    default_timeout = reader.timeout(data.get("timeout"), "timeout")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise sweep_error(source, "name", f"expected a non-empty string, got {name!r}")
    points: list[tuple[Point, float | None]] = []
    for index, table in enumerate(grids_raw):
        grid = reader.grid(index, table, defaults)
        timeout = grid.timeout if grid.timeout is not None else default_timeout
        for point in combinations(grid, source):
            check_option_keys(point, names, source)
            points.append((point, timeout))
    return SweepFile(source, text, data, name, executor, max_parallel, points)


def _safe_specs(kind: str) -> dict[str, KeySpec]:
    try:
        return option_keys(kind)
    except UsageError:
        return {}


def read_sweep(path: Path | str) -> SweepFile:
    """Read and check a sweep file (first pass)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    return parse_sweep(text, str(path))


def load_sweep(path: Path | str) -> Sweep:
    """Both passes: the sweep's cells, every name and option checked, nothing run."""
    return read_sweep(path).plan()


def check_same_sweep(sweep: Sweep, recorded: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse to resume a run directory with a sweep that means other cells."""
    if recorded.get("hash") == sweep.hash:
        return
    before = {c["key"] for c in recorded.get("cells", [])}
    added = sum(p.cell.key not in before for p in sweep.cells)
    removed = len(before - set(sweep.keys))
    lines = [
        f"{run_dir} was made from a different sweep: {added} cell(s) of the file are not "
        f"in the run and {removed} of the run's are not in the file (run hash "
        f"{recorded.get('hash')}, file hash {sweep.hash})."
    ]
    changes = _differences(recorded.get("config"), sweep.file.data, "")
    if changes:
        shown = changes[:5] + ([f"... ({len(changes) - 5} more)"] if len(changes) > 5 else [])
        lines.append("Changed in the file: " + "; ".join(shown))
    else:
        lines.append(
            "The file is unchanged, but it now plans other cells: an installed plugin, "
            "a command default or this machine (device, threads) differs from the run's."
        )
    lines.append(
        "Results of different configs are never mixed in one run: start a new run "
        "(drop --resume), or resume without naming a file to rerun the recorded sweep."
    )
    raise UsageError("\n".join(lines))


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """Paths (``grid[1].steps: 5 -> 6``) where two parsed sweep files differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{where}.{key}" if where else key
            if key not in new:
                out.append(f"{path} removed")
            elif key not in old:
                out.append(f"{path} added ({new[key]!r})")
            else:
                out += _differences(old[key], new[key], path)
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and any(isinstance(item, dict) for item in old)
    ):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in _differences(a, b, f"{where}[{i}]")
        ]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def recorded_sweep(run_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep a run directory recorded (for ``--resume`` without a file)."""
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: no such run directory")
    recorded = manifest.get("sweep")
    if manifest.get("kind") != "sweep" or not isinstance(recorded, dict) or "text" not in recorded:
        raise UsageError(
            f"--resume {run_dir}: not a sweep run directory (its manifest records no sweep)"
        )
    return recorded


def write_sweep_manifest(sweep: Sweep, run: Any, file: str | None) -> None:
    """A new sweep run directory's manifest: the sweep, its cells and the environment."""
    from mixbench.runs.environment import collect_environment
    from mixbench.runs.rows import SCHEMA_VERSION, utc_now

    devices = sorted({str(p.cell.config.get("device") or "cpu") for p in sweep.cells})
    run.write_manifest(
        {
            "schema": SCHEMA_VERSION,
            "kind": "sweep",
            "run_id": run.path.name,
            "command": ["mixbench", *sys.argv[1:]],
            "sweep": sweep.manifest_entry(file),
            "cells": len(sweep.cells),
            "environment": collect_environment(devices[0]),
            "started_at": utc_now(),
            "ended_at": None,
            "status": "running",
            "sessions": [],
        }
    )
