"""The result store: one directory per run, one JSON line per cell.

A run directory holds

* ``manifest.json`` — what was asked and where it ran (command line, config, versions,
  hardware, start/end time, status); rewritten atomically as the run progresses;
* ``results.jsonl`` — one row per cell, appended, flushed and fsynced as each cell finishes,
  so that a killed run loses at most the cell in flight; rows are never edited;
* rendered tables (``leaderboard.csv``, ``leaderboard.md``) and, for training, ``curves/``.

Reading is forgiving: a torn last line (a run killed mid-write) or a hand-corrupted row is
reported with file and line and skipped, never a crash.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mixbench.errors import UsageError
from mixbench.runs.rows import plain

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"
REQUIRED_FIELDS = ("kind", "key", "status", "config")
STATUSES = ("ok", "oom", "error", "timeout", "skipped", "diverged")


@dataclass(frozen=True)
class Problem:
    """A line of a results file that could not be read."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class RunDir:
    """A run directory being written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: Path | str, prefix: str) -> RunDir:
        """A new directory ``root/<prefix>-<UTC timestamp>`` (suffixed if it exists)."""
        root = Path(root)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        base = f"{prefix}-{stamp}"
        for attempt in range(1000):
            path = root / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                path.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            return cls(path)
        raise UsageError(f"could not create a run directory under {root}")

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write the manifest atomically (a reader never sees half of it)."""
        write_json_atomic(self.manifest_path, manifest)

    def read_manifest(self) -> dict[str, Any]:
        return read_manifest(self.path)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        manifest = self.read_manifest() if self.manifest_path.exists() else {}
        manifest.update(changes)
        self.write_manifest(manifest)
        return manifest

    def append_row(
        self, row: Mapping[str, Any], curves: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append one row and make it durable before returning it as written; a cell's
        ``curves`` (a training run's loss and accuracy over steps) go to
        ``curves/<key>.json`` first, and the row's ``curves_file`` points at them."""
        row = dict(row)
        if curves:
            relative = f"curves/{row['key']}.json"
            (self.path / "curves").mkdir(exist_ok=True)
            data = {"key": row["key"], "config": row["config"], **curves}
            write_json_atomic(self.path / relative, data)
            row["curves_file"] = relative
        append_row(self.results_path, row)
        return row

    def rows(self) -> list[dict[str, Any]]:
        rows, _ = read_rows(self.results_path)
        return rows

    def done_keys(self) -> set[str]:
        return {row["key"] for row in self.rows()}


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    line = json.dumps(plain(row), sort_keys=True, allow_nan=False)
    if "\n" in line:
        raise ValueError("a result row must serialise to one line")
    with open(path, "a+b") as handle:
        # A run killed mid-write leaves a torn last line; start on a fresh line so that the
        # torn fragment stays one unreadable line and this row stays readable.
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write((line + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(plain(data), handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_rows(path: Path | str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Rows of a results file, and the lines that could not be read."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return rows, [Problem(path, 0, "no such file")]
    lines = text.split("\n")
    torn_tail = not text.endswith("\n") and text != ""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(lines) and torn_tail
            reason = (
                "torn last line (the run was killed mid-write)" if last else f"not JSON ({exc.msg})"
            )
            problems.append(Problem(path, number, reason))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(path, number, "not a JSON object"))
            continue
        missing = [name for name in REQUIRED_FIELDS if name not in row]
        if missing:
            problems.append(Problem(path, number, f"missing field(s): {', '.join(missing)}"))
            continue
        if not isinstance(row["config"], dict):
            problems.append(Problem(path, number, "'config' is not an object"))
            continue
        rows.append(row)
    return rows, problems


def read_manifest(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the manifest is not a JSON object")
    return data


def find_results(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Results files named directly or inside run directories (searched recursively)."""
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield path
        elif path.is_dir():
            found = sorted(path.rglob(RESULTS_FILE))
            if not found:
                raise UsageError(f"{path}: no {RESULTS_FILE} in this directory or below it")
            yield from found
        else:
            raise UsageError(f"{path}: no such file or directory")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def check_writable(out: Path) -> None:
    """``--out`` can hold a run directory: created now if missing, else a usage error."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create it ({exc.strerror})") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: not a writable directory")


def recorded_options(run_dir: Path, kind: str) -> Mapping[str, Any]:
    """The options a ``kind`` run directory was started with (its manifest's
    ``<kind>_options``), for ``--resume``; a usage error for anything else."""
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: no such run directory")
    manifest = read_manifest(run_dir)
    recorded = manifest.get(f"{kind}_options")
    if manifest.get("kind") != kind or not isinstance(recorded, Mapping):
        raise UsageError(
            f"--resume {run_dir}: not a resumable {kind} run (its manifest records no "
            f"{kind}_options; runs from before resume existed cannot be resumed)"
        )
    return recorded
