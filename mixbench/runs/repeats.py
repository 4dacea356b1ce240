"""Process repeats of a timing cell: the interleaved order, and one row from R processes.

Why repeat in fresh processes: a timing taken in one process sees one allocator layout, one
cache and frequency state, one set of neighbours. Rerun the same code and those change, so
the per-iteration samples of one process understate how much a second run can differ. The
unit a regression gate must sample is the process (pyperf, asv and Google Benchmark's
repetitions all do this): each cell is measured R times, each time in a process that has
measured nothing else, and the cell's value is the median of the R process medians.

Why interleave: processes run round-robin over the cells in a shuffled order (the seed is
recorded), so slow drift of the machine (a neighbour starting, thermal state) spreads over
every cell instead of landing on the cells that happened to run last.

This module knows rows and statistics; it runs nothing (``mixbench.runs.driver`` does).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from mixbench.measure.stats import median, summarize

# Row metrics that are rates of the median latency: rescaled when the median changes.
RATE_METRICS = (
    "samples_per_s",
    "tokens_per_s",
    "model_gflops_per_s",
    "executed_gflops_per_s",
    "model_frac_peak_flops",
    "executed_frac_peak_flops",
    "gflops_per_s",  # rows before conventions version 1
    "frac_peak_flops",
)
PROCESS_KEY_SEPARATOR = "#p"


def process_key(key: str, index: int) -> str:
    """The job key of one process repeat of a cell (``index`` counts from 1)."""
    return f"{key}{PROCESS_KEY_SEPARATOR}{index}"


def split_process_key(key: str) -> tuple[str, int]:
    """The cell key and process index of a job key (index 1 for a plain cell key)."""
    cell, separator, index = key.rpartition(PROCESS_KEY_SEPARATOR)
    if separator and index.isdigit():
        return cell, int(index)
    return key, 1


def interleaved(
    repeats: Mapping[str, int], seed: int | None, done: Mapping[str, set[int]] | None = None
) -> list[tuple[str, int]]:
    """(cell key, process index) in run order: round r runs every cell's r-th process,
    the cells in one order shuffled by ``seed`` (in the order given when ``seed`` is None:
    training cells, whose results do not drift with the machine, run as planned).
    ``done`` lists indices already measured."""
    order = list(repeats)
    if seed is not None:
        order.sort()
        random.Random(seed).shuffle(order)
    done = done or {}
    rounds = max(repeats.values(), default=0)
    return [
        (key, index)
        for index in range(1, rounds + 1)
        for key in order
        if index <= repeats[key] and index not in done.get(key, set())
    ]


def process_record(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """What a cell's row keeps of one process: its median and summary, pid and timing."""
    metrics = row.get("metrics") or {}
    measurement = row.get("measurement") or {}
    return {
        "index": index,
        "pid": (row.get("runtime") or {}).get("pid"),
        "status": row.get("status"),
        "median_ms": metrics.get("latency_ms_median"),
        "iqr_ms": metrics.get("latency_ms_iqr"),
        "ci95_ms": metrics.get("latency_ms_ci95"),
        "rel_iqr": metrics.get("latency_rel_iqr"),
        "reference_ms": measurement.get("reference_ms"),
        "reference_before_ms": measurement.get("reference_before_ms"),
        "reference_after_ms": measurement.get("reference_after_ms"),
        "samples": len(row.get("samples_ms") or []),
        "started_at": row.get("started_at"),
        "duration_s": row.get("duration_s"),
    }


def combine_processes(
    rows: Sequence[Mapping[str, Any]], planned: int | None = None
) -> dict[str, Any]:
    """One cell's row from the rows of its R processes (in process order).

    A process that failed makes the cell fail with that status (the reason says which
    process, of the ``planned`` ones: the processes after it never ran). Otherwise the row
    is the first process's, with the latency statistics taken over the process medians
    when R > 1 (median, IQR, 95 % CI, noise flag), the
    within-process spread beside the between-process one, rates rescaled to the new median,
    the reference workload's time (``measurement.reference_ms``) the median over processes,
    every process's samples kept and each process's summary under ``processes``.
    """
    if not rows:
        raise ValueError("a cell needs at least one process row")
    records = [process_record(row, index) for index, row in enumerate(rows, start=1)]
    first = rows[0]
    row: dict[str, Any] = {**first, "metrics": dict(first.get("metrics") or {})}
    row["processes"] = records
    row["duration_s"] = round(sum(float(r.get("duration_s") or 0.0) for r in rows), 3)
    failed = next((r for r in rows if r.get("status") != "ok"), None)
    if failed is not None:
        index = rows.index(failed) + 1
        total = planned or len(rows)
        several = total > 1 and failed.get("status") != "skipped"  # skipped: not chance
        prefix = f"process {index} of {total}: " if several else ""
        reason = prefix + str(failed.get("reason"))
        return {**failed, "reason": reason, "processes": records, "duration_s": row["duration_s"]}
    metrics = row["metrics"]
    medians = [float(r["median_ms"]) for r in records]
    within = [float(r["rel_iqr"]) for r in records if r.get("rel_iqr") is not None]
    metrics["processes"] = len(rows)
    metrics["latency_within_rel_iqr"] = median(within) if within else None
    if len(rows) == 1:
        metrics["latency_between_rel_iqr"] = None
        return row
    references = process_references(row)
    measurement = dict(first.get("measurement") or {})
    measurement.pop("reference_before_ms", None)  # each process's are in its record
    measurement.pop("reference_after_ms", None)
    measurement["reference_ms"] = median(references) if references else None
    row["measurement"] = measurement
    summary = summarize(medians)
    scale = float(first["metrics"]["latency_ms_median"]) / summary.median
    for name in RATE_METRICS:
        if isinstance(metrics.get(name), (int, float)):
            metrics[name] = metrics[name] * scale
    metrics.update(
        latency_ms_median=summary.median,
        latency_ms_iqr=summary.iqr,
        latency_ms_ci95=[summary.ci95_low, summary.ci95_high],
        latency_ci_coverage=summary.ci_coverage,
        latency_rel_iqr=summary.rel_iqr,
        latency_between_rel_iqr=summary.rel_iqr,
        noisy=summary.noisy,
    )
    row["samples_ms"] = [s for r in rows for s in (r.get("samples_ms") or [])]
    return row


def process_medians(row: Mapping[str, Any]) -> list[float]:
    """The process-level samples of a row: its processes' medians, or (a row from before
    process repeats, or one process) its own median: one process, one sample."""
    records = row.get("processes")
    if isinstance(records, list) and records:
        values = [r.get("median_ms") for r in records if isinstance(r, Mapping)]
        return [float(v) for v in values if isinstance(v, (int, float))]
    value = (row.get("metrics") or {}).get("latency_ms_median")
    return [float(value)] if isinstance(value, (int, float)) else []


def process_references(row: Mapping[str, Any]) -> list[float]:
    """The reference workload's time (``mixbench.measure.reference``) in each of a row's
    processes, in the order of ``process_medians``; empty when any process lacks it (rows
    from before references, or a failed process): such a row cannot be drift-corrected."""
    records = row.get("processes")
    if isinstance(records, list) and records:
        values = [r.get("reference_ms") if isinstance(r, Mapping) else None for r in records]
    else:
        values = [(row.get("measurement") or {}).get("reference_ms")]
    if all(isinstance(v, (int, float)) and v > 0 for v in values):
        return [float(v) for v in values]  # type: ignore[arg-type]
    return []


def relative_range(values: Sequence[float]) -> float | None:
    """(max - min) / median: how far apart the process medians lie (None below two)."""
    if len(values) < 2:
        return None
    center = median(values)
    return (max(values) - min(values)) / center if center > 0 else None
