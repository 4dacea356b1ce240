"""Robust summaries of timing samples, in pure Python (no torch, no numpy needed).

Latency samples are skewed (a preempted iteration is slow, never fast), so the mean and
standard deviation describe them poorly. We report what ``torch.utils.benchmark`` reports:
the median and the interquartile range, and flag a cell as noisy when IQR / median exceeds
10 % (DESIGN.md, "Measurement principles").

The 95 % confidence interval of the median is distribution-free: for sorted samples
x(1) <= ... <= x(n), the interval [x(j), x(n+1-j)] contains the true median with
probability 1 - 2 P(Bin(n, 1/2) <= j - 1), whatever the distribution (the classical
order-statistic interval; e.g. Hollander & Wolfe, *Nonparametric Statistical Methods*).
We choose the narrowest such interval whose coverage is at least 95 %. With fewer than six
samples no interval reaches 95 %; the widest one, [min, max], is returned and its actual
coverage is reported alongside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

NOISY_REL_IQR = 0.10


def quantile(values: Sequence[float], q: float) -> float:
    """Quantile by linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] * (1.0 - weight) + ordered[upper] * weight


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def iqr(values: Sequence[float]) -> float:
    """Interquartile range, Q3 - Q1."""
    return quantile(values, 0.75) - quantile(values, 0.25)


def median_ci95(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage) of the order-statistic confidence interval of the median."""
    if not values:
        raise ValueError("confidence interval of no values")
    ordered = sorted(values)
    n = len(ordered)
    total = 1 << n  # exact integers: 2**n overflows a float beyond n = 1023
    # tail = P(Bin(n, 1/2) <= j - 1) * 2**n, grown one binomial term at a time.
    best_j, best_tail = 1, 1
    tail, term = 0, 1  # term = C(n, j - 1)
    for j in range(1, (n + 1) // 2 + 1):
        tail += term
        if 1.0 - 2.0 * (tail / total) < level:
            break
        best_j, best_tail = j, tail
        term = term * (n - (j - 1)) // j
    coverage = 1.0 - 2.0 * (best_tail / total)
    return ordered[best_j - 1], ordered[n - best_j], coverage


@dataclass(frozen=True)
class Summary:
    """What a results row says about one set of per-iteration samples."""

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    rel_iqr: float
    ci95_low: float
    ci95_high: float
    ci_coverage: float
    minimum: float
    maximum: float
    noisy: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float], noisy_threshold: float = NOISY_REL_IQR) -> Summary:
    """Median, quartiles, CI and the noise flag of ``values``."""
    if not values:
        raise ValueError("summary of no values")
    q1, mid, q3 = quantile(values, 0.25), quantile(values, 0.5), quantile(values, 0.75)
    spread = q3 - q1
    rel = spread / mid if mid > 0 else math.inf if spread > 0 else 0.0
    low, high, coverage = median_ci95(values)
    return Summary(
        n=len(values),
        median=mid,
        q1=q1,
        q3=q3,
        iqr=spread,
        rel_iqr=rel,
        ci95_low=low,
        ci95_high=high,
        ci_coverage=coverage,
        minimum=min(values),
        maximum=max(values),
        noisy=rel > noisy_threshold,
    )


def loglog_slope(xs: Sequence[float], ys: Sequence[float], top: int | None = 3) -> float | None:
    """Least-squares slope of log(y) against log(x): the empirical scaling exponent.

    Only the ``top`` largest x are used (all when ``top`` is None): at small sizes fixed
    costs (Python dispatch, the MLP around the mixer) flatten the curve, and the asymptotic
    exponent is what a complexity claim is about. Returns None with fewer than two distinct
    positive points.
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    points = sorted((float(x), float(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0)
    if top is not None:
        points = points[-top:]
    if len({x for x, _ in points}) < 2:
        return None
    lx = [math.log(x) for x, _ in points]
    ly = [math.log(y) for _, y in points]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    return sxy / sxx
