"""compare: the rank test against scipy, pairing, verdicts and the CI exit status."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu
from test_results import bench_config, bench_row, write_bench_run, write_manifest, write_train_run
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.errors import UsageError
from mixbench.report.compare import NOT_JUDGEABLE, compare_results, mann_whitney_u, parse_threshold
from mixbench.report.results import load_results
from mixbench.runs.store import append_row

runner = CliRunner()


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
        ([1, 1, 2, 2, 2, 3, 5, 5], [2, 3, 3, 3, 4, 4, 6, 6, 6]),  # many ties
        ([0.5] * 4 + [0.7] * 3, [0.5] * 2 + [0.9] * 5),  # almost all tied
        ([random.Random(1).gauss(0, 1) for _ in range(40)],
         [random.Random(2).gauss(0.4, 1) for _ in range(55)]),
    ],
)  # fmt: skip
def test_mann_whitney_matches_scipy(x: list[float], y: list[float]) -> None:
    ours = mann_whitney_u(x, y, exact=False)
    ref = mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert ours.u == pytest.approx(ref.statistic)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), ([1.5, 4.0, 7.0, 2.0], [3.0, 5.0, 6.0, 8.0, 9.0])],
)
def test_small_samples_use_the_exact_distribution_as_scipy_does(
    x: list[float], y: list[float]
) -> None:
    ours = mann_whitney_u(x, y)
    ref = mannwhitneyu(x, y, alternative="two-sided", method="exact")
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert mann_whitney_u([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).p == pytest.approx(0.1)


def test_mann_whitney_edge_cases() -> None:
    assert mann_whitney_u([3.0, 3.0], [3.0, 3.0, 3.0]).p == 1.0  # all tied: no evidence
    assert mann_whitney_u([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).p == 1.0
    far = mann_whitney_u(list(range(30)), list(range(100, 130)))
    assert far.p < 1e-9
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("5", 0.05), ("0.05", 0.05),
                                             ("0.5%", 0.005), ("0", 0.0)])  # fmt: skip
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


def test_parse_threshold_rejects_nonsense() -> None:
    for text in ("fast", "-5%"):
        with pytest.raises(UsageError, match="--threshold"):
            parse_threshold(text)


def test_compare_a_with_itself_exits_zero(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "a", processes=5)
    result = runner.invoke(app, ["compare", str(run), str(run)])
    assert result.exit_code == 0, result.output
    assert "6 paired cell(s): 6 unchanged; no regression" in result.output
    comparison = compare_results(load_results(run), load_results(run))
    assert {p.verdict for p in comparison.pairs} == {"unchanged"}
    assert all(p.p == 1.0 and p.ratio == 1.0 for p in comparison.pairs)


def test_slower_threads_are_flagged_and_exit_one(tmp_path: Path) -> None:
    two = write_bench_run(tmp_path / "two", threads=2, seed=1, processes=5)
    # One thread: attention 1.6x slower, pooling barely changed (memory-bound).
    one = tmp_path / "one"
    write_bench_run(one, mixers=["attention"], threads=1, slowdown=1.6, seed=2, processes=5)
    write_bench_run(one, mixers=["pooling"], threads=1, slowdown=1.001, seed=3, processes=5)
    comparison = compare_results(load_results(two), load_results(one))
    assert comparison.paired_across == {"threads": (2, 1)}
    verdicts = {(p.label["mixer"], p.label["tokens"]): p.verdict for p in comparison.pairs}
    assert len(verdicts) == 6
    assert all(v == "regressed" for (m, _), v in verdicts.items() if m == "attention")
    assert all(v != "regressed" for (m, _), v in verdicts.items() if m == "pooling")
    assert comparison.exit_code == 1

    result = runner.invoke(app, ["compare", str(two), str(one)])
    assert result.exit_code == 1
    assert "paired across differing threads: 2 → 1" in result.output
    assert "3 regression(s)" in result.output
    # Reversed, the same cells are improvements and CI passes.
    assert runner.invoke(app, ["compare", str(one), str(two)]).exit_code == 0


def test_small_significant_change_is_within_threshold(tmp_path: Path) -> None:
    base = write_bench_run(
        tmp_path / "base", mixers=["pooling"], samples=20, jitter=0.005, processes=6
    )
    new = write_bench_run(
        tmp_path / "new", mixers=["pooling"], samples=20, jitter=0.005, slowdown=1.02, seed=9,
        processes=6,
    )  # fmt: skip
    comparison = compare_results(load_results(base), load_results(new), threshold=0.05)
    assert {p.verdict for p in comparison.pairs} == {"within threshold"}
    assert all(p.p is not None and p.p < 0.01 for p in comparison.pairs)
    strict = compare_results(load_results(base), load_results(new), threshold=0.01)
    assert {p.verdict for p in strict.pairs} == {"regressed"}


def test_one_process_a_side_is_not_judged_however_large_the_change(tmp_path: Path) -> None:
    for name, samples in (("base", [1, 1, 1, 10, 10, 10, 10]), ("new", [1, 1, 1, 1, 10, 10, 11])):
        write_manifest(tmp_path / name)
        row = bench_row(bench_config("attention", 256), [float(s) for s in samples])
        append_row(tmp_path / name / "results.jsonl", row)
    comparison = compare_results(load_results(tmp_path / "base"), load_results(tmp_path / "new"))
    (pair,) = comparison.pairs
    assert pair.ratio == pytest.approx(0.1)  # the medians differ tenfold ...
    assert pair.verdict == NOT_JUDGEABLE  # ... but one process a side says nothing


def test_one_sided_cells_are_listed_and_failures_count(tmp_path: Path) -> None:
    base = write_bench_run(tmp_path / "base", mixers=["attention", "pooling"], tokens=[256])
    new = write_bench_run(tmp_path / "new", mixers=["pooling", "window"], tokens=[256])
    comparison = compare_results(load_results(base), load_results(new))
    assert comparison.only_base == [{"mixer": "attention"}]
    assert comparison.only_new == [{"mixer": "window"}]
    assert comparison.exit_code == 0
    result = runner.invoke(app, ["compare", str(base), str(new)])
    assert result.exit_code == 0
    assert "only in BASE: mixer=attention" in result.output
    assert "only in NEW: mixer=window" in result.output

    append_row(new / "results.jsonl", bench_row(bench_config("attention", 256), status="oom"))
    broke = compare_results(load_results(base), load_results(new))
    assert [p.verdict for p in broke.pairs if p.label["mixer"] == "attention"] == ["broke"]
    assert broke.exit_code == 1


def test_throughput_and_memory_directions(tmp_path: Path) -> None:
    base = write_bench_run(tmp_path / "base", mixers=["pooling"], tokens=[1024], processes=5)
    new = write_bench_run(
        tmp_path / "new", mixers=["pooling"], tokens=[1024], slowdown=1.5, processes=5
    )
    slower = compare_results(load_results(base), load_results(new), metric="throughput")
    (pair,) = slower.pairs
    assert pair.ratio == pytest.approx(1 / 1.5, rel=0.03) and pair.verdict == "regressed"
    same_memory = compare_results(load_results(base), load_results(new), metric="memory")
    assert same_memory.pairs[0].verdict == "unchanged"


def test_train_runs_compare_over_seeds(tmp_path: Path) -> None:
    base = write_train_run(tmp_path / "base", {("attention", "adam"): [0.90, 0.91, 0.92, 0.93]})
    new = write_train_run(tmp_path / "new", {("attention", "adam"): [0.60, 0.61, 0.62, 0.63]})
    comparison = compare_results(load_results(base), load_results(new), metric="accuracy")
    (pair,) = comparison.pairs
    assert pair.base.values == pytest.approx([0.90, 0.91, 0.92, 0.93])
    assert pair.verdict == "regressed" and pair.p is not None and pair.p < 0.05
