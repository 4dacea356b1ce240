"""compare as a CI gate: the exact rank test, and the decision rule on process-level samples
with known answers (synthetic rows, no timing)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_results import bench_config, bench_row, latency_model, write_manifest
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.report.compare import (
    NOT_JUDGEABLE,
    POSSIBLE_REGRESSION,
    compare_results,
    rank_test_p,
    ratio_interval,
)
from mixbench.report.results import load_results
from mixbench.runs.repeats import combine_processes
from mixbench.runs.store import append_row

runner = CliRunner()


def brute_force_p(x: list[float], y: list[float]) -> float:
    """Two-sided permutation p of the rank sum over every split of the pooled mid-ranks."""
    pooled = sorted(x + y)
    rank = {v: (pooled.index(v) + len(pooled) - pooled[::-1].index(v) + 1) / 2 for v in pooled}
    ranks = [rank[v] for v in x + y]
    mean = len(x) * (len(pooled) + 1) / 2
    observed = abs(sum(ranks[: len(x)]) - mean)
    splits = list(itertools.combinations(range(len(ranks)), len(x)))
    extreme = sum(abs(sum(ranks[i] for i in s) - mean) >= observed - 1e-9 for s in splits)
    return extreme / len(splits)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]),
        ([1.0, 3.0, 5.0, 7.0, 9.0], [2.0, 4.0, 6.0, 8.0, 10.0]),
        ([1.0, 1.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 4.0]),  # ties
        ([5.0, 5.0, 5.0], [5.0, 5.0, 6.0]),
        ([0.3, 0.1, 0.9, 0.4, 0.2, 0.8], [0.5, 0.7, 0.6]),
    ],
)
def test_exact_rank_test_matches_enumeration(x: list[float], y: list[float]) -> None:
    assert rank_test_p(x, y) == pytest.approx(brute_force_p(x, y))


def test_exact_rank_test_known_answers() -> None:
    assert rank_test_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert rank_test_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)  # 3 a side: never < 0.05
    assert rank_test_p([2.0, 2.0], [2.0, 2.0]) == 1.0


def write_run(
    run: Path,
    *,
    processes: int,
    slowdown: float = 1.0,
    spread: float = 0.02,
    seed: int = 0,
    mixers: tuple[str, ...] = ("attention", "pooling"),
    tokens: tuple[int, ...] = (256, 1024),
    samples: int = 25,
    machine: Sequence[float] | None = None,
    environment: dict[str, Any] | None = None,
) -> Path:
    """A bench run whose rows each combine ``processes`` process rows; every process's
    median is the cell's latency times (1 + U(0, spread)), times ``slowdown``.

    ``machine``: how much slower the machine ran in each process, cycled through: that
    process's latency is multiplied by it, and it times the reference workload at
    10 ms x that factor (x (1 + U(0, 0.005))). Without it, rows have no reference."""
    rng = random.Random(seed)
    write_manifest(run, **(environment or {}))
    factors = itertools.cycle(machine or [1.0])
    for mixer in mixers:
        for n in tokens:
            config = bench_config(mixer, n)
            parts = []
            for _ in range(processes):
                factor = next(factors)
                center = latency_model(mixer, n) * slowdown * (1 + spread * rng.random())
                center *= factor
                values = [center * (1 + 0.001 * rng.random()) for _ in range(samples)]
                row = bench_row(config, values, run_id=run.name)
                if machine is not None:
                    row["measurement"]["reference_ms"] = 10 * factor * (1 + 0.005 * rng.random())
                parts.append(row)
            append_row(run / "results.jsonl", combine_processes(parts))
    return run


def _compare(base: Path, new: Path, threshold: float = 0.05) -> dict[str, str]:
    comparison = compare_results(load_results(base), load_results(new), threshold=threshold)
    return {f"{p.label['mixer']}@{p.label['tokens']}": p.verdict for p in comparison.pairs}


def test_one_process_a_side_is_never_a_verdict(tmp_path: Path) -> None:
    """Thousands of per-iteration samples 15 % apart: within-process samples say nothing
    about the next process, so one process a side cannot be judged."""
    base = write_run(tmp_path / "a", processes=1, samples=2000)
    new = write_run(tmp_path / "b", processes=1, samples=2000, slowdown=1.15, seed=1)
    assert set(_compare(base, new).values()) == {NOT_JUDGEABLE}
    result = runner.invoke(app, ["compare", str(base), str(new)])
    assert result.exit_code == 0, result.output
    assert "not enough repeats to judge" in result.output and "no regression" in result.output
    strict = runner.invoke(app, ["compare", str(base), str(new), "--strict"])
    assert strict.exit_code == 1


def test_three_processes_a_side_cannot_reach_significance(tmp_path: Path) -> None:
    base = write_run(tmp_path / "a", processes=3)
    new = write_run(tmp_path / "b", processes=3, slowdown=1.5, seed=1)
    assert set(_compare(base, new).values()) == {NOT_JUDGEABLE}


def test_a_real_slowdown_at_five_processes_is_a_regression(tmp_path: Path) -> None:
    base = write_run(tmp_path / "a", processes=5)
    new = write_run(tmp_path / "b", processes=5, slowdown=1.2, seed=1)
    assert set(_compare(base, new).values()) == {"regressed"}
    result = runner.invoke(app, ["compare", str(base), str(new)])
    assert result.exit_code == 1
    assert "5/5" in result.output and "4 regression(s)" in result.output
    assert runner.invoke(app, ["compare", str(new), str(base)]).exit_code == 0


def test_same_code_within_the_threshold_never_fails_the_gate(tmp_path: Path) -> None:
    """Process medians spread 3 %, threshold 5 %: no A/A pair can be a regression."""
    for seed in range(10):
        base = write_run(tmp_path / f"a{seed}", processes=5, spread=0.03, seed=2 * seed)
        new = write_run(tmp_path / f"b{seed}", processes=5, spread=0.03, seed=2 * seed + 1)
        verdicts = set(_compare(base, new).values())
        assert verdicts <= {"unchanged", "within threshold"}


def test_small_significant_change_is_within_threshold_and_overlap_is_no_evidence(
    tmp_path: Path,
) -> None:
    base = write_run(tmp_path / "a", processes=6, spread=0.005)
    new = write_run(tmp_path / "b", processes=6, spread=0.005, slowdown=1.03, seed=1)
    assert set(_compare(base, new).values()) == {"within threshold"}
    assert set(_compare(base, new, threshold=0.01).values()) == {"regressed"}
    # Medians far apart but processes overlapping: one wild process is no evidence.
    noisy = write_run(tmp_path / "c", processes=5, spread=1.0, seed=5)
    comparison = compare_results(load_results(base), load_results(noisy))
    for pair in comparison.pairs:
        assert pair.noise is not None and pair.noise > 0.2
        if pair.p is not None and pair.p >= 0.05:
            assert pair.verdict == "unchanged"


def test_noise_floor_is_the_larger_relative_range(tmp_path: Path) -> None:
    base = write_run(tmp_path / "a", processes=5, spread=0.02, mixers=("pooling",), tokens=(256,))
    new = write_run(
        tmp_path / "b", processes=5, spread=0.10, seed=3, mixers=("pooling",), tokens=(256,)
    )
    (pair,) = compare_results(load_results(base), load_results(new)).pairs
    medians = pair.new.samples
    expected = (max(medians) - min(medians)) / sorted(medians)[2]
    assert pair.noise is not None and pair.noise == pytest.approx(expected)
    assert pair.noise > (pair.base.spread or 0)
    assert not math.isnan(pair.ratio)


def test_ratio_interval_known_answers() -> None:
    base, new = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]
    ratios = sorted(y / x for x in base for y in new)
    five = ratio_interval(base, new)
    assert five is not None
    # 5 a side: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252, so [D(3), D(23)].
    assert five.low == pytest.approx(ratios[2]) and five.high == pytest.approx(ratios[22])
    assert five.estimate == pytest.approx(ratios[12]) and five.coverage == pytest.approx(
        1 - 8 / 252
    )
    four = ratio_interval(base[:4], new[:4])
    assert four is not None and four.coverage == pytest.approx(1 - 2 / 70)
    assert (four.low, four.high) == pytest.approx((6 / 4, 9 / 1))  # [min, max] of the ratios
    assert ratio_interval(base[:3], new[:3]) is None  # 3 a side: no interval at 95 %
    # Values that can be 0 (an accuracy) are shifted, read against BASE's median.
    shifted = ratio_interval([0.0, 0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8, 0.9])
    differences = sorted(
        y - x for x in (0.0, 0.1, 0.2, 0.3, 0.4) for y in (0.5, 0.6, 0.7, 0.8, 0.9)
    )
    assert shifted is not None and shifted.low == pytest.approx(1 + differences[2] / 0.2)
    assert ratio_interval([-1.0, 0.0, 1.0, 0.0, 0.0], [1.0] * 5) is None  # BASE centred on 0


@pytest.mark.parametrize("seed", range(6))
def test_ratio_interval_is_the_set_of_ratios_the_test_accepts(seed: int) -> None:
    """r lies in the interval exactly when the rank test does not reject BASE against
    NEW / r: just inside either end it accepts, just outside it rejects."""
    rng = random.Random(seed)
    sizes = [(5, 5), (6, 5), (4, 7), (8, 8), (21, 22)][seed % 5]
    base = [rng.lognormvariate(0, 0.2) for _ in range(sizes[0])]
    new = [rng.lognormvariate(0.3, 0.2) for _ in range(sizes[1])]
    interval = ratio_interval(base, new)
    assert interval is not None and interval.low <= interval.estimate <= interval.high
    for end, inward in ((interval.low, 1 + 1e-9), (interval.high, 1 - 1e-9)):
        assert rank_test_p(base, [v / (end * inward) for v in new]) >= 0.05
        assert rank_test_p(base, [v / (end / inward) for v in new]) < 0.05


def write_cell(run: Path, medians: Sequence[float]) -> Path:
    """A run of one cell whose processes had exactly these medians."""
    write_manifest(run)
    parts = [bench_row(bench_config("pooling", 1024), [m] * 5, run_id=run.name) for m in medians]
    append_row(run / "results.jsonl", combine_processes(parts))
    return run


def test_a_point_estimate_beyond_the_threshold_is_not_enough(tmp_path: Path) -> None:
    """NEW's processes ~8 % slower, two pairs overlapping: significant (U = 2, p = 0.032),
    the estimate beyond 5 %, but the interval reaches below it: a possible regression,
    which fails only --strict."""
    base = write_cell(tmp_path / "a", [1.00, 1.02, 1.04, 1.06, 1.08])
    new = write_cell(tmp_path / "b", [1.05, 1.10, 1.12, 1.14, 1.16])
    (pair,) = compare_results(load_results(base), load_results(new)).pairs
    assert pair.p == pytest.approx(8 / 252) and pair.interval is not None
    assert pair.interval.estimate > 1.05 and pair.interval.low == pytest.approx(1.05 / 1.04)
    assert pair.verdict == POSSIBLE_REGRESSION
    result = runner.invoke(app, ["compare", str(base), str(new)])
    assert result.exit_code == 0 and "possible regression" in result.output
    assert runner.invoke(app, ["compare", str(base), str(new), "--strict"]).exit_code == 1
    # Shifted 10 % further, every pair apart and D(3) beyond 5 %: a regression.
    slower = write_cell(tmp_path / "c", [1.21, 1.23, 1.25, 1.27, 1.29])
    (pair,) = compare_results(load_results(base), load_results(slower)).pairs
    assert pair.verdict == "regressed" and pair.interval is not None
    assert pair.interval.low == pytest.approx(1.21 / 1.06)  # the third smallest ratio


def test_whole_machine_drift_is_corrected_by_the_reference(tmp_path: Path) -> None:
    """NEW ran on a machine 25 % slower throughout (its reference workload too): as
    measured that is a regression in every cell; corrected, nothing changed."""
    base = write_run(tmp_path / "a", processes=5, machine=[1.0])
    new = write_run(tmp_path / "b", processes=5, machine=[1.25], seed=1)
    comparison = compare_results(load_results(base), load_results(new))
    assert comparison.uncorrected is None and comparison.drift == pytest.approx(1.25, rel=0.01)
    assert all(p.ratio > 1.2 for p in comparison.pairs)  # as measured ...
    assert {p.verdict for p in comparison.pairs} <= {"unchanged", "within threshold"}  # judged
    result = runner.invoke(app, ["compare", str(base), str(new)])
    assert result.exit_code == 0, result.output
    assert "machine drift NEW/BASE: 1.2" in result.output
    # Without references the same times are a regression: the correction did the work.
    plain_base = write_run(tmp_path / "c", processes=5)
    plain_new = write_run(tmp_path / "d", processes=5, slowdown=1.25, seed=1)
    assert set(_compare(plain_base, plain_new).values()) == {"regressed"}


def test_drift_within_a_run_is_corrected_process_by_process(tmp_path: Path) -> None:
    """Two of five processes ran while the machine was 40 % slower: per process, the
    reference moves with the cell, and the corrected samples agree."""
    base = write_run(tmp_path / "a", processes=5, machine=[1.0, 1.4, 1.0, 1.4, 1.0])
    new = write_run(tmp_path / "b", processes=5, machine=[1.0], seed=1, spread=0.01)
    comparison = compare_results(load_results(base), load_results(new))
    for pair in comparison.pairs:
        assert pair.noise is not None and pair.noise < 0.05  # the corrected spread
        assert pair.verdict in ("unchanged", "within threshold")


def test_a_real_slowdown_survives_drift_correction(tmp_path: Path) -> None:
    """The code 50 % slower while the machine ran 10 % faster: the reference takes the
    machine out and leaves the code's slowdown."""
    base = write_run(tmp_path / "a", processes=5, machine=[1.0])
    new = write_run(tmp_path / "b", processes=5, machine=[0.9], slowdown=1.5, seed=1)
    comparison = compare_results(load_results(base), load_results(new))
    assert {p.verdict for p in comparison.pairs} == {"regressed"}
    for pair in comparison.pairs:
        assert pair.interval is not None
        assert pair.interval.estimate == pytest.approx(1.5, rel=0.03)
        assert pair.ratio == pytest.approx(1.35, rel=0.03)
    # A rate is corrected the other way round: multiplied by the reference time.
    throughput = compare_results(load_results(base), load_results(new), metric="throughput")
    for pair in throughput.pairs:
        assert pair.verdict == "regressed" and pair.interval is not None
        assert pair.interval.estimate == pytest.approx(1 / 1.5, rel=0.03)


def test_drift_is_not_corrected_across_torch_versions_or_without_references(
    tmp_path: Path,
) -> None:
    base = write_run(tmp_path / "a", processes=5, machine=[1.0])
    upgraded = write_run(
        tmp_path / "b", processes=5, machine=[1.25], seed=1, environment={"torch": "9.9"}
    )
    comparison = compare_results(load_results(base), load_results(upgraded))
    assert comparison.uncorrected is not None and "torch_version" in comparison.uncorrected
    assert all(p.drift is None for p in comparison.pairs)
    assert {p.verdict for p in comparison.pairs} == {"regressed"}
    old = write_run(tmp_path / "c", processes=5)  # rows from before the reference workload
    result = runner.invoke(app, ["compare", str(old), str(base)])
    assert result.exit_code == 0, result.output
    assert "no reference workload" in result.output and "judged as measured" in result.output
