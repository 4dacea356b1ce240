"""compare as a CI gate: the exact rank test, and the decision rule on process-level samples
with known answers (synthetic rows, no timing)."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
from test_results import bench_config, bench_row, latency_model, write_manifest
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.report.compare import NOT_JUDGEABLE, compare_results, rank_test_p
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
) -> Path:
    """A bench run whose rows each combine ``processes`` process rows; every process's
    median is the cell's latency times (1 + U(0, spread)), times ``slowdown``."""
    rng = random.Random(seed)
    write_manifest(run)
    for mixer in mixers:
        for n in tokens:
            config = bench_config(mixer, n)
            parts = []
            for _ in range(processes):
                center = latency_model(mixer, n) * slowdown * (1 + spread * rng.random())
                values = [center * (1 + 0.001 * rng.random()) for _ in range(samples)]
                parts.append(bench_row(config, values, run_id=run.name))
            append_row(run / "results.jsonl", combine_processes(parts))
    return run


def _compare(base: Path, new: Path, **options: float) -> dict[str, str]:
    comparison = compare_results(load_results(base), load_results(new), **options)
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
    assert pair.noise == pytest.approx(expected) and pair.noise > (pair.base.spread or 0)
    assert not math.isnan(pair.ratio)
