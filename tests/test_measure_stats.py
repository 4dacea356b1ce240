"""Robust statistics: quantiles as numpy computes them, a CI of the median with the coverage
it claims, the noise flag, and the log-log slope behind the scaling exponents."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from mixbench.measure.stats import iqr, loglog_slope, median, median_ci95, quantile, summarize


@pytest.mark.parametrize("n", [1, 2, 5, 10, 101])
def test_quantiles_match_numpy_linear_interpolation(n: int) -> None:
    values = [random.Random(n).lognormvariate(0, 1) for _ in range(n)]
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    assert median(values) == pytest.approx(float(np.median(values)))
    expected_iqr = float(np.quantile(values, 0.75) - np.quantile(values, 0.25))
    assert iqr(values) == pytest.approx(expected_iqr)


def test_median_ci_uses_the_order_statistics_of_the_binomial() -> None:
    values = [float(i) for i in range(1, 101)]
    low, high, coverage = median_ci95(values)
    # For n = 100 the classical 95 % interval is [x(40), x(61)], coverage 0.9648.
    assert (low, high) == (40.0, 61.0)
    assert coverage == pytest.approx(0.9648, abs=1e-4)


def test_median_ci_with_few_samples_is_min_max_and_says_its_coverage() -> None:
    low, high, coverage = median_ci95([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0)
    assert coverage == pytest.approx(1 - 2 / 2**5)  # below 95 %: reported, not hidden
    assert median_ci95([1.0] * 6)[2] >= 0.95


def test_median_ci_handles_thousands_of_samples() -> None:
    values = [float(i) for i in range(5000)]
    low, high, coverage = median_ci95(values)
    assert low < median(values) < high
    assert 0.95 <= coverage < 0.96


def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time() -> None:
    rng = random.Random(0)
    true_median = math.log(2.0)  # of the exponential distribution with rate 1
    trials, hits = 1500, 0
    for _ in range(trials):
        low, high, _ = median_ci95([rng.expovariate(1.0) for _ in range(25)])
        hits += low <= true_median <= high
    assert hits / trials >= 0.94  # 0.957 nominal for n = 25; allow Monte-Carlo error


def test_summary_flags_noise_above_ten_percent() -> None:
    quiet = summarize([100.0, 101.0, 99.0, 100.5, 99.5])
    assert not quiet.noisy and quiet.rel_iqr < 0.1
    noisy = summarize([100.0, 130.0, 80.0, 120.0, 90.0])
    assert noisy.noisy and noisy.rel_iqr > 0.1
    assert noisy.ci95_low <= noisy.median <= noisy.ci95_high


@pytest.mark.parametrize("exponent", [1.0, 2.0, 1.5])
def test_loglog_slope_recovers_a_power_law(exponent: float) -> None:
    xs = [256, 1024, 4096, 16384]
    ys = [3.0 * x**exponent for x in xs]
    assert loglog_slope(xs, ys) == pytest.approx(exponent)


def test_loglog_slope_uses_the_largest_sizes() -> None:
    xs = [64, 256, 1024, 4096]
    ys = [50.0, 50.0, 200.0, 800.0]  # flat (fixed cost) at small N, linear at large N
    assert loglog_slope(xs, ys, top=2) == pytest.approx(1.0)
    assert loglog_slope(xs, ys, top=None) < 1.0


def test_loglog_slope_needs_two_distinct_positive_points() -> None:
    assert loglog_slope([256], [1.0]) is None
    assert loglog_slope([256, 256], [1.0, 2.0]) is None
    assert loglog_slope([256, 1024], [0.0, 2.0]) is None
