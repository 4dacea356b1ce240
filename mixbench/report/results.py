"""Reading run directories into one table, and what each metric means.

``load_results`` is the notebook entry point: it merges any number of run directories (or
``results.jsonl`` files) into a pandas DataFrame with one row per stored result. ``config.*``
and ``metrics.*`` become plain columns (``mixer``, ``tokens``, ``latency_ms_median``...), so
``df.groupby("mixer")`` works as a researcher expects, and each row carries the facts of the
run it came from (run id, device, CPU, torch version, commit) so merged runs from different
machines are never mistaken for one another.

Reading is forgiving, as the store promises: a torn or hand-corrupted line is reported with
its file and line and skipped. ``read_results`` returns those problems for the CLI to print;
``load_results`` turns them into warnings.

The metric registry below is the one place that says which direction is better, what unit a
metric has and whether it is a timing (so noise flags and raw-sample significance apply).
Leaderboards, comparisons and plots all read it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.runs.repeats import process_medians, process_references
from mixbench.runs.store import Problem, find_results, read_manifest, read_rows

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# Run-level facts taken from each manifest, and the conventions the bench rows follow (their
# metrics.conventions_version). Runs that differ in any of these are shown apart, never
# averaged together (see mixbench.report.leaderboard).
ENVIRONMENT_FACTS = (
    "device_name",
    "cpu",
    "torch_version",
    "python_version",
    "mixbench_version",
    "commit",
    "conventions_version",
)


class ResultsWarning(UserWarning):
    """A results line that could not be read and was skipped."""


@dataclass(frozen=True)
class Metric:
    """What a metric column means: unit, direction, and how it may be tested."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    kind: str  # "bench", "train" or "any"
    timing: bool = False  # derived from latency samples: noise flags and sample tests apply
    deterministic: bool = False  # the same code gives the same number (counts, sizes)
    flops: str | None = None  # which FLOPs the metric is made of (docs/conventions.md)
    display_scale: float = 1.0  # multiply by this for tables and plots ...
    display_unit: str | None = None  # ... which then show this unit
    known: bool = True

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def shown_unit(self) -> str:
        return self.display_unit if self.display_unit is not None else self.unit

    def title(self) -> str:
        unit = f" ({self.shown_unit})" if self.shown_unit else ""
        return f"{self.label}{unit}"


MiB = 1024.0**2

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("latency_ms_median", "latency per batch, median", "ms", False, "bench", timing=True),
        Metric("latency_ms_iqr", "latency IQR", "ms", False, "bench", timing=True),
        Metric("samples_per_s", "throughput", "samples/s", True, "bench", timing=True),
        Metric("tokens_per_s", "throughput", "tokens/s", True, "bench", timing=True),
        Metric(
            "model_gflops_per_s",
            "achieved model FLOP/s",
            "GFLOP/s",
            True,
            "bench",
            timing=True,
            flops="model",
        ),
        Metric(
            "executed_gflops_per_s",
            "achieved executed FLOP/s",
            "GFLOP/s",
            True,
            "bench",
            timing=True,
            flops="executed",
        ),
        Metric(
            "model_frac_peak_flops",
            "model FLOP/s as a fraction of probed matmul peak",
            "",
            True,
            "bench",
            timing=True,
            flops="model",
        ),
        Metric(
            "executed_frac_peak_flops",
            "executed FLOP/s as a fraction of probed matmul peak",
            "",
            True,
            "bench",
            timing=True,
            flops="executed",
        ),
        Metric(
            "gflops_per_s",
            "achieved compute (convention 0: counter + forward-only extras)",
            "GFLOP/s",
            True,
            "bench",
            timing=True,
            flops="convention-0",
        ),
        Metric(
            "frac_peak_flops",
            "fraction of probed matmul peak (convention 0)",
            "",
            True,
            "bench",
            timing=True,
            flops="convention-0",
        ),
        Metric(
            "peak_mem_bytes",
            "peak memory above baseline",
            "bytes",
            False,
            "bench",
            deterministic=True,
            display_scale=1 / MiB,
            display_unit="MiB",
        ),
        Metric(
            "model_flops",
            "model FLOPs per step",
            "FLOP",
            False,
            "bench",
            deterministic=True,
            display_scale=1e-9,
            display_unit="GFLOP",
            flops="model",
        ),
        Metric(
            "executed_flops",
            "executed FLOPs per step",
            "FLOP",
            False,
            "bench",
            deterministic=True,
            display_scale=1e-9,
            display_unit="GFLOP",
            flops="executed",
        ),
        Metric(
            "flops",
            "FLOPs per batch (convention 0: counter + forward-only extras)",
            "FLOP",
            False,
            "bench",
            deterministic=True,
            display_scale=1e-9,
            display_unit="GFLOP",
            flops="convention-0",
        ),
        Metric("params", "parameters", "count", False, "any", deterministic=True),
        Metric(
            "final_val_acc",
            "final validation accuracy",
            "fraction",
            True,
            "train",
            display_scale=100.0,
            display_unit="%",
        ),
        Metric(
            "test_acc",
            "test accuracy",
            "fraction",
            True,
            "train",
            display_scale=100.0,
            display_unit="%",
        ),
        Metric("test_loss", "test loss", "nats", False, "train"),
        Metric(
            "best_val_acc",
            "best validation accuracy",
            "fraction",
            True,
            "train",
            display_scale=100.0,
            display_unit="%",
        ),
        Metric(
            "train_acc",
            "final training accuracy",
            "fraction",
            True,
            "train",
            display_scale=100.0,
            display_unit="%",
        ),
        Metric("final_val_loss", "final validation loss", "nats", False, "train"),
        Metric("best_val_loss", "best validation loss", "nats", False, "train"),
        Metric("train_loss", "final training loss", "nats", False, "train"),
        Metric("train_time_s", "training time", "s", False, "train"),
        Metric(
            "median_step_s",
            "training step, median",
            "s",
            False,
            "train",
            display_scale=1e3,
            display_unit="ms",
        ),
        Metric("time_to_target_s", "time to target accuracy", "s", False, "train"),
        Metric("steps_to_target", "steps to target accuracy", "steps", False, "train"),
        Metric("grad_evals", "gradient evaluations", "count", False, "train"),
        Metric("grad_evals_to_target", "gradient evaluations to target", "count", False, "train"),
        Metric("rho_sharpness", "rho-sharpness of the training loss", "nats", False, "train"),
        Metric("hessian_top_eig", "top Hessian eigenvalue", "", False, "train"),
    ]
}

# Short names a user types; some mean a different column for bench and for train rows.
ALIASES: dict[str, dict[str, str]] = {
    "latency": {"bench": "latency_ms_median", "train": "median_step_s"},
    "time": {"bench": "latency_ms_median", "train": "train_time_s"},
    "memory": {"bench": "peak_mem_bytes"},
    "throughput": {"bench": "tokens_per_s"},
    "accuracy": {"train": "final_val_acc"},
    "acc": {"train": "final_val_acc"},
    "loss": {"train": "final_val_loss"},
    "sharpness": {"train": "rho_sharpness"},
}

DEFAULT_METRIC = {"bench": "latency_ms_median", "train": "final_val_acc"}

_HIGHER_HINTS = ("acc", "per_s", "throughput", "frac", "speedup", "score", "f1")


def resolve_metric(name: str | None, kind: str, columns: Iterable[str] = ()) -> Metric:
    """The metric a user asked for, by alias, registered name, or any numeric column.

    A column the registry does not know is accepted (plugins may add metrics) with its
    direction guessed from its name; ``Metric.known`` is False so tables can say so.
    """
    columns = list(columns)
    wanted = DEFAULT_METRIC.get(kind, "latency_ms_median") if name is None else name
    if name is None and kind == "train" and "test_acc" in columns:
        wanted = "test_acc"  # rows with a test split: report on data no choice has seen
    wanted = ALIASES.get(wanted, {}).get(kind, wanted)
    if wanted in METRICS:
        return METRICS[wanted]
    if wanted in columns:
        higher = any(hint in wanted for hint in _HIGHER_HINTS)
        return Metric(wanted, wanted, "", higher, kind, known=False)
    present = sorted(m for m in METRICS if m in columns) or sorted(METRICS)
    raise UsageError(
        f"--metric: unknown metric {name!r}; available here: {', '.join(present)} "
        f"(aliases: {', '.join(ALIASES)})"
    )


@dataclass
class RunInfo:
    """One run directory (or bare results file) that was read."""

    run_id: str
    path: Path
    results_file: Path
    facts: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)
    rows: int = 0


@dataclass
class Results:
    """What ``read_results`` found: the table, the unreadable lines, and the runs."""

    frame: pd.DataFrame
    problems: list[Problem]
    runs: list[RunInfo]


def _environment(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The part of a manifest that describes the machine (nested or at top level)."""
    for name in ("environment", "env", "system", "machine"):
        candidate = manifest.get(name)
        if isinstance(candidate, Mapping) and any(
            k in candidate for k in ("torch", "cpu", "device_name", "python")
        ):
            return candidate
    return manifest


def _version(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get("version")
    return value


def run_facts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Hardware and version facts of one run, from its manifest (None where unknown)."""
    env = _environment(manifest)
    git = env.get("git") or manifest.get("git") or {}
    commit = git.get("id") if isinstance(git, Mapping) else git
    return {
        "device_name": env.get("device_name"),
        "cpu": env.get("cpu"),
        "cores": env.get("cores"),
        "torch_version": _version(env.get("torch")),
        "python_version": _version(env.get("python")),
        "mixbench_version": _version(env.get("mixbench")),
        "commit": str(commit)[:12] if commit else None,
        "commit_dirty": git.get("dirty") if isinstance(git, Mapping) else None,
        "hostname": env.get("machine") if isinstance(env.get("machine"), str) else None,
    }


def _cell_text(value: Any) -> Any:
    """A config value as something pandas can group by (dicts and lists are unhashable)."""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_cell_text(v)}" for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "x".join(str(v) for v in value)  # a token grid: 32x32
        return json.dumps(value, sort_keys=True)
    return value


def _flatten_metrics(metrics: Mapping[str, Any], taken: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        column = f"metrics.{name}" if name in taken else name
        if isinstance(value, Mapping):
            for sub, inner in value.items():
                if not isinstance(inner, (Mapping, list)):
                    out[f"{column}.{sub}"] = inner
        elif isinstance(value, (list, tuple)):
            if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                out[f"{column}_lo"], out[f"{column}_hi"] = value  # a [low, high] interval
            else:
                out[column] = list(value)
        else:
            out[column] = value
    return out


def _flatten_row(row: Mapping[str, Any], run: RunInfo) -> tuple[dict[str, Any], list[str]]:
    """One stored row as one flat record (see the module docstring), and which of its
    columns are measurements."""
    record: dict[str, Any] = {
        "kind": row.get("kind"),
        "key": row.get("key"),
        "status": row.get("status"),
        "reason": row.get("reason"),
    }
    if row.get("kind") == "bench":  # rows before docs/conventions.md have no version: 0
        record["conventions_version"] = row.get("conventions_version", 0)
    config = row.get("config") or {}
    for name, value in config.items():
        record[name] = _cell_text(value)
    tuning = config.get("lr_tuning")
    if isinstance(tuning, Mapping):  # a tuned cell: its stage (trial | tuned) says enough
        record["lr_tuning"] = tuning.get("stage")
    metrics = row.get("metrics")
    if isinstance(metrics, Mapping):
        flat = _flatten_metrics(metrics, set(record))
        record.update(flat)
    else:
        flat = {}
    for section in ("runtime", "measurement"):  # how the cell ran: prefixed, scalars only
        facts = row.get(section)
        if isinstance(facts, Mapping):
            for name, value in facts.items():
                if not isinstance(value, (Mapping, list)):
                    record[f"{section}.{name}"] = value
    samples = row.get("samples_ms")
    record["samples_ms"] = list(samples) if isinstance(samples, list) else None
    medians = process_medians(row)  # the process-level unit of compare and the exports
    record["process_medians_ms"] = medians if len(medians) > 1 else None
    references = process_references(row)  # the machine's speed in each of those processes
    several = len(medians) > 1 and len(references) == len(medians)
    record["process_references_ms"] = references if several else None
    curves = row.get("curves_file")
    record["curves_file"] = str(run.path / curves) if isinstance(curves, str) else None
    record["started_at"] = row.get("started_at")
    record["duration_s"] = row.get("duration_s")
    record["run_id"] = row.get("run_id") or run.run_id
    record["run_dir"] = str(run.path)
    record.update(run.facts)
    return record, list(flat)


def read_results(paths: Iterable[Path | str] | Path | str, kind: str | None = None) -> Results:
    """Every row under ``paths`` (run directories, searched recursively, or results files).

    ``kind`` keeps only ``"bench"`` or ``"train"`` rows. Unreadable lines are returned as
    problems, never raised; a path that does not exist is a UsageError.
    """
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    if kind is not None and kind not in ("bench", "train"):
        raise UsageError(f"--kind: {kind!r} is not bench or train")
    records: list[dict[str, Any]] = []
    problems: list[Problem] = []
    runs: list[RunInfo] = []
    seen: set[Path] = set()
    config_names: set[str] = set()
    metric_names: set[str] = set()
    for results_file in find_results(paths):
        resolved = results_file.resolve()
        if resolved in seen:  # the same run named twice must not count twice
            continue
        seen.add(resolved)
        run_dir = results_file.parent
        manifest = read_manifest(run_dir)
        run_id = str(manifest.get("run_id") or run_dir.name)
        run = RunInfo(run_id, run_dir, results_file, run_facts(manifest), manifest)
        rows, found = read_rows(results_file)
        problems.extend(found)
        for row in rows:
            if kind is not None and row.get("kind") != kind:
                continue
            record, measured = _flatten_row(row, run)
            records.append(record)
            config_names.update(row["config"])
            metric_names.update(measured)
            run.rows += 1
        runs.append(run)
    frame = pd.DataFrame.from_records(records)
    # Which columns came from config and which from metrics, for table builders that must
    # tell identity (what was measured) from measurements.
    frame.attrs["config_columns"] = sorted(config_names)
    frame.attrs["metric_columns"] = sorted(metric_names)
    return Results(frame=frame, problems=problems, runs=runs)


def load_results(paths: Iterable[Path | str] | Path | str, kind: str | None = None) -> pd.DataFrame:
    """Rows of the given run directories as a DataFrame, one row per stored cell.

    Lines that could not be read are skipped with a ``ResultsWarning`` naming file and line;
    they are also listed in ``frame.attrs["problems"]`` (as text).
    """
    results = read_results(paths, kind=kind)
    for problem in results.problems:
        warnings.warn(f"skipped {problem}", ResultsWarning, stacklevel=2)
    results.frame.attrs["problems"] = [str(p) for p in results.problems]
    return results.frame


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is ``ok`` (an empty frame stays empty)."""
    if frame.empty or "status" not in frame:
        return frame
    return frame[frame["status"] == "ok"]
