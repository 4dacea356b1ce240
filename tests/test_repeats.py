"""Process repeats: the interleaved order, one row from R process rows, resolution warnings."""

from __future__ import annotations

from typing import Any

import pytest

from mixbench.report.resolution import resolution_warnings, resolvable_change
from mixbench.runs.repeats import (
    combine_processes,
    interleaved,
    process_key,
    process_medians,
    process_references,
    relative_range,
    split_process_key,
)


def _process_row(
    median: float, *, pid: int, status: str = "ok", reference: float | None = None
) -> dict[str, Any]:
    return {
        "schema": 1,
        "kind": "bench",
        "key": f"cell#p{pid}",
        "status": status,
        "reason": None if status == "ok" else "out of memory",
        "config": {"mixer": "attention", "tokens": 256, "batch_size": 8},
        "metrics": {
            "latency_ms_median": median,
            "latency_ms_iqr": median * 0.02,
            "latency_ms_ci95": [median * 0.99, median * 1.01],
            "latency_rel_iqr": 0.02,
            "noisy": False,
            "samples_per_s": 8 / (median / 1e3),
            "flops": 1000,
        }
        if status == "ok"
        else {},
        "samples_ms": [median * 0.99, median, median * 1.01] if status == "ok" else [],
        "runtime": {"pid": pid},
        "measurement": {} if reference is None else {"reference_ms": reference},
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 1.0,
    }


def test_process_keys_round_trip() -> None:
    assert split_process_key(process_key("abc", 3)) == ("abc", 3)
    assert split_process_key("abc") == ("abc", 1)


def test_interleaved_runs_rounds_over_one_shuffled_order() -> None:
    repeats = {key: 3 for key in "abcdef"}
    order = interleaved(repeats, seed=7)
    assert len(order) == 18
    rounds = [order[i : i + 6] for i in range(0, 18, 6)]
    assert [{i for _, i in r} for r in rounds] == [{1}, {2}, {3}]
    cells = [[k for k, _ in r] for r in rounds]
    assert cells[0] == cells[1] == cells[2] and sorted(cells[0]) == list("abcdef")
    assert interleaved(repeats, seed=7) == order  # the recorded seed reproduces it
    assert any(interleaved(repeats, seed=s) != order for s in range(8))
    resumed = interleaved(repeats, seed=7, done={"a": {1, 2}, "b": {1}})
    assert ("a", 1) not in resumed and ("a", 3) in resumed and ("b", 2) in resumed
    assert len(resumed) == 15


def test_combined_row_reports_over_process_medians() -> None:
    rows = [_process_row(m, pid=i) for i, m in enumerate([10.0, 12.0, 11.0, 10.5, 30.0])]
    row = combine_processes(rows)
    metrics = row["metrics"]
    assert metrics["processes"] == 5
    assert metrics["latency_ms_median"] == 11.0  # the median of the five process medians
    assert metrics["latency_ms_ci95"] == [10.0, 30.0]  # n < 6: [min, max]
    assert metrics["latency_between_rel_iqr"] == pytest.approx((12.0 - 10.5) / 11.0)
    assert metrics["latency_within_rel_iqr"] == pytest.approx(0.02)
    assert metrics["samples_per_s"] == pytest.approx(8 / 0.011)  # rescaled to the median
    assert metrics["flops"] == 1000
    assert [p["pid"] for p in row["processes"]] == [0, 1, 2, 3, 4]
    assert [p["median_ms"] for p in row["processes"]] == [10.0, 12.0, 11.0, 10.5, 30.0]
    assert len(row["samples_ms"]) == 15 and row["duration_s"] == 5.0
    assert process_medians(row) == [10.0, 12.0, 11.0, 10.5, 30.0]
    assert process_references(row) == [] and row["measurement"]["reference_ms"] is None


def test_each_process_keeps_its_reference_workload_time() -> None:
    references = [4.0, 4.2, 8.0, 4.1, 4.0]
    rows = [_process_row(10.0 * r, pid=i, reference=r) for i, r in enumerate(references)]
    row = combine_processes(rows)
    assert process_references(row) == references  # aligned with process_medians
    assert row["measurement"]["reference_ms"] == 4.1  # the median over processes
    rows[2]["measurement"] = {}  # one process without: the row cannot be corrected
    assert process_references(combine_processes(rows)) == []


def test_one_process_keeps_the_row_and_a_failed_process_fails_the_cell() -> None:
    single = combine_processes([_process_row(10.0, pid=1)])
    assert single["metrics"]["latency_ms_median"] == 10.0
    assert single["metrics"]["processes"] == 1 and process_medians(single) == [10.0]
    failed = combine_processes([_process_row(10.0, pid=1), _process_row(0, pid=2, status="oom")])
    assert failed["status"] == "oom"
    assert failed["reason"] == "process 2 of 2: out of memory"
    assert len(failed["processes"]) == 2
    early = combine_processes([_process_row(0, pid=1, status="oom")], planned=5)
    assert early["reason"] == "process 1 of 5: out of memory"  # the other four never ran


def test_old_rows_are_one_process_and_relative_range_needs_two() -> None:
    old = {"status": "ok", "metrics": {"latency_ms_median": 4.0}}
    assert process_medians(old) == [4.0] and relative_range([4.0]) is None
    assert relative_range([10, 12, 11]) == pytest.approx(2 / 11)


def _cell(medians: list[float], references: list[float] | None = None) -> dict[str, Any]:
    refs: list[float | None] = list(references) if references else [None] * len(medians)
    pairs = enumerate(zip(medians, refs, strict=True))
    return combine_processes([_process_row(m, pid=i, reference=r) for i, (m, r) in pairs])


def test_bench_warns_of_cells_whose_processes_cannot_resolve_a_threshold_sized_change() -> None:
    """The warning follows compare's rule (the ratio's interval), not the raw spread."""
    steady = _cell([10, 10.2, 10.1, 10.05, 10.15])
    shaky = _cell([10, 12, 11, 10.5, 11.5])
    # Against a run spread alike, compare's interval excludes no change only beyond 14.3 %.
    assert resolvable_change(process_medians(shaky)) == pytest.approx(12 / 10.5 - 1)
    lines = resolution_warnings([steady, shaky], threshold=0.10)
    assert len(lines) == 1 and "attention N=256" in lines[0] and "beyond 14.3%" in lines[0]
    assert "cannot call a 10% change" in lines[0]
    # Spread 10.9 % (max - min beyond 10 %), yet the interval, which leaves out the two
    # most extreme pairs, resolves 6 %: no warning.
    strays = _cell([9.5, 10, 10.05, 10.1, 10.6])
    assert relative_range(process_medians(strays)) == pytest.approx(1.1 / 10.05)
    assert resolvable_change(process_medians(strays)) == pytest.approx(0.06)
    assert resolution_warnings([strays], threshold=0.10) == []
    # Three processes allow compare no interval at all: no resolution, no warning.
    assert resolvable_change([10, 12, 11]) is None
    assert resolution_warnings([_cell([10, 12, 11])], threshold=0.10) == []
    # The machine 20 % slower in the slow processes: what compare judges (each median over
    # its reference time) is steady, so no warning; the same with steady references warns.
    slow = [10, 12, 10, 12, 10]
    assert resolution_warnings([_cell(slow, [4, 4.8, 4, 4.8, 4])], threshold=0.10) == []
    (line,) = resolution_warnings([_cell(slow, [4] * 5)], threshold=0.10)
    assert "5 drift-corrected process medians resolve only changes beyond 20.0%" in line


def test_leaderboard_and_pytest_benchmark_export_read_process_medians(tmp_path: Any) -> None:
    """A row whose processes disagree is noisy in the leaderboard even though each process
    was steady, and the export's rounds are the process medians."""
    from test_results import bench_config, bench_row, write_manifest

    from mixbench.report.leaderboard import build_leaderboard
    from mixbench.report.pytest_benchmark import to_pytest_benchmark
    from mixbench.report.results import load_results
    from mixbench.runs.store import append_row

    write_manifest(tmp_path)
    config = bench_config("pooling", 256)
    parts = [bench_row(config, [m] * 9) for m in (10.0, 13.0, 11.0, 15.0, 12.0)]
    append_row(tmp_path / "results.jsonl", combine_processes(parts))
    steady = bench_config("attention", 256)
    append_row(tmp_path / "results.jsonl", bench_row(steady, [5.0] * 9))  # an old-style row
    frame = load_results(tmp_path)
    cells = build_leaderboard(frame).cells.set_index("mixer")
    assert cells.loc["pooling", "value"] == 12.0 and bool(cells.loc["pooling", "noisy"])
    assert not bool(cells.loc["attention", "noisy"])
    exported = {b["params"]["mixer"]: b for b in to_pytest_benchmark(frame)["benchmarks"]}
    pooling = exported["pooling"]
    assert pooling["stats"]["rounds"] == 5 and pooling["stats"]["median"] == pytest.approx(0.012)
    assert pooling["extra_info"]["sample_unit"] == "process median"
    assert exported["attention"]["stats"]["rounds"] == 9
    assert exported["attention"]["extra_info"]["sample_unit"] == "iteration"


def test_load_warning_says_what_was_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixbench.bench.run import BenchRun, load_warning

    def run(busy: float | None) -> BenchRun:
        return BenchRun(None, None, [], False, busy, 2)  # type: ignore[arg-type]

    assert load_warning(run(0.2)) is None
    assert "kept 1.5 of 2 cores busy over the last 1 s" in str(load_warning(run(1.5)))
    monkeypatch.setattr("os.getloadavg", lambda: (3.0, 1.0, 0.5))
    assert "1-minute load average 3.00" in str(load_warning(run(None)))
