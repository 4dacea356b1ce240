"""Export benchmark rows in pytest-benchmark's saved-run JSON format.

pytest-benchmark (``--benchmark-save``/``--benchmark-json``) stores a run as one JSON object:
``machine_info``, ``commit_info``, ``datetime``, ``version`` and ``benchmarks``, where each
benchmark has ``group``, ``name``, ``fullname``, ``params``, ``param``, ``extra_info``,
``options`` and ``stats``. Its statistics are in **seconds per iteration** over ``rounds``
samples (each sample a block of ``iterations`` calls), with quartiles computed by its own
method (Wikipedia's "method 3" for odd counts, "method 2" for even ones), which we reproduce
so the numbers match what pytest-benchmark itself would print for the same samples.

Writing that format lets ``pytest-benchmark compare`` and the dashboards built on it read
mixbench runs. Only benchmark rows that finished (``status == "ok"``) with raw samples are
exported; everything mixbench knows that the format has no field for goes in
``extra_info``.

The samples are process-level when the row has them (``mixbench bench --processes R``,
R > 1): one round per worker process, its median, so ``pytest-benchmark compare`` and
``mixbench compare`` read the same unit (``extra_info["sample_unit"]`` says which). A row
of one process exports its per-iteration samples, as before.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.runs.rows import plain

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# The pytest-benchmark release whose saved-run schema this mirrors.
SCHEMA_VERSION = "5.1.0"
NAME_FIELDS = (
    "mixer",
    "tokens",
    "grid",
    "level",
    "mode",
    "optimizer",
    "dim",
    "batch_size",
    "dtype",
    "device",
    "threads",
    "compile",
    "mixer_options",
    "optimizer_options",
    "preset",
    "repeat",
)


def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    """Q1 and Q3 the way pytest-benchmark computes them."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2:  # method 3
        k, r = n // 4, n % 4
        if r == 1:
            return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    half = n // 2  # method 2
    return statistics.median(data[:half]), statistics.median(data[half:])


def benchmark_stats(samples_s: Sequence[float], iterations: int = 1) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for per-iteration samples in seconds."""
    if not samples_s:
        raise ValueError("no samples")
    data = sorted(float(s) for s in samples_s)
    n = len(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(1 for v in data if v < low_fence or v > high_fence)
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    total = math.fsum(data)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[0] if n == 1 else data[bisect_left(data, low_fence)],
        "hd15iqr": data[0] if n == 1 else data[bisect_right(data, high_fence) - 1],
        "ops": n / total if total else 0.0,
        "total": total,
        "data": list(samples_s),
        "iterations": iterations,
    }


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return bool(value == value)  # NaN and pandas NA are absent
    except (TypeError, ValueError):
        return True


def _machine_info(first: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine_info keys, filled from the run's recorded facts."""
    return {
        "node": first.get("hostname") or "",
        "processor": first.get("cpu") or platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": first.get("python_version") or "",
        "system": platform.system(),
        "cpu": {"brand_raw": first.get("cpu") or "", "count": first.get("cores")},
        "mixbench": {
            "device_name": first.get("device_name"),
            "torch_version": first.get("torch_version"),
            "mixbench_version": first.get("mixbench_version"),
        },
    }


def to_pytest_benchmark(frame: pd.DataFrame) -> dict[str, Any]:
    """A pytest-benchmark saved run holding every finished benchmark row of ``frame``."""
    if frame.empty or "kind" not in frame.columns:
        raise UsageError("no results to export")
    rows = frame[(frame["kind"] == "bench") & (frame["status"] == "ok")]
    rows = rows[rows["samples_ms"].map(lambda s: isinstance(s, list) and len(s) > 0)]
    if rows.empty:
        raise UsageError("pytest-benchmark export: no finished benchmark rows with raw samples")
    config_columns = set(frame.attrs.get("config_columns", ())) or set(NAME_FIELDS)
    benchmarks = []
    for record in rows.to_dict("records"):
        params = {
            k: plain(record[k])
            for k in NAME_FIELDS
            if k in record and k in config_columns and _present(record[k])
        }
        shown = {k: v for k, v in params.items() if k in ("tokens", "level", "mode")}
        if "x" in str(params.get("grid", "")):  # a 2-D layout says more than the count
            shown["grid"] = params["grid"]
        base_name = f"{record.get('mixer', 'cell')}"
        name = f"{base_name}[" + ",".join(f"{k}={v}" for k, v in shown.items()) + "]"
        # fullname must be unique per cell: pytest-benchmark keys comparisons by it.
        fullname = f"mixbench::{record['run_id']}::{base_name}[{record['key']}]"
        iterations = record.get("measurement.number", record.get("runtime.number"))
        samples_ms = record["samples_ms"]
        extra = {
            k: plain(v)
            for k, v in record.items()
            if k not in ("samples_ms",) and _present(v) and not isinstance(v, list)
        }
        extra["sample_unit"] = "iteration"
        medians = record.get("process_medians_ms")
        if isinstance(medians, list) and len(medians) > 1:
            samples_ms, iterations = medians, 1
            extra["sample_unit"] = "process median"
        benchmarks.append(
            {
                "group": f"{params.get('level', 'bench')} {params.get('mode', '')}".strip(),
                "name": name,
                "fullname": fullname,
                "params": params,
                "param": record["key"],
                "extra_info": extra,
                "options": {"timer": "mixbench", "disable_gc": False, "warmup": True},
                "stats": benchmark_stats(
                    [float(s) / 1000.0 for s in samples_ms],
                    int(iterations) if _present(iterations) else 1,
                ),
            }
        )
    first = rows.iloc[0].to_dict()
    commit = first.get("commit")
    started = first.get("started_at")
    return {
        "machine_info": _machine_info(first),
        "commit_info": {
            "id": commit or "unknown",
            "time": None,
            "author_time": None,
            "dirty": bool(first.get("commit_dirty"))
            if _present(first.get("commit_dirty"))
            else False,
            "project": "mixbench",
            "branch": "(unknown)",
        },
        "benchmarks": benchmarks,
        "datetime": started if isinstance(started, str) else datetime.now(timezone.utc).isoformat(),
        "version": SCHEMA_VERSION,
    }


def dumps_pytest_benchmark(frame: pd.DataFrame) -> str:
    return json.dumps(to_pytest_benchmark(frame), indent=4, allow_nan=False, default=str) + "\n"
