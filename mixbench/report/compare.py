"""Did a change make things slower? Pair two runs' cells and test each difference.

Each cell of BASE is paired with the cell of NEW that measured the same thing (same key:
the same config). Settings that are constant within each run but differ between the two
(``--threads 1`` against ``--threads 2``, another dtype, ``--compile``) are what the user is
comparing, so cells are paired ignoring them and the difference is stated. Repeats and
seeds of one cell are pooled.

For each pair we report the ratio new/base of the cell's aggregated value (the median over
process medians for benchmarks, the mean over seeds for training) and a verdict. A change
counts only when the samples show, at confidence 1 - alpha, that it is larger than
``--threshold``: the distribution-free confidence interval of the ratio (Hodges-Lehmann,
from the exact Mann-Whitney distribution, ``ratio_interval``) must lie entirely beyond it.
A point estimate beyond the threshold is not enough: with five processes a side, one
side's processes can all be 20 % slower than the other's by drift alone, and then only
the interval's width says that a 25 % change is not established.

* timings: the samples are *process-level*: one median per worker process
  (``mixbench bench --processes R``). Per-iteration samples of one process are not used:
  they share that process's allocator, cache and frequency state, so thousands of them
  give astronomically small p-values for drift that the next process does not reproduce.
  A row from before process repeats counts as one process.
* machine drift: every process also times a fixed reference workload around its cell
  (``mixbench.measure.reference``). When both sides have it, on the same hardware and
  torch, each process's time is divided by its own reference time before judging, so a
  machine that ran 20 % slower during one run cancels; the drift corrected is shown. The
  reference runs one thread whatever the cell's ``--threads``, so 1 thread against 2 is
  not corrected away. Rows without it (older runs, R = 1) are judged as measured, and the
  output says so.
* training metrics: the same rule on the per-seed values;
* deterministic metrics (parameters, FLOPs, peak memory): any difference is real;
* a cell whose samples allow no interval at alpha (R = 1 on a side; with the exact test
  also 3 against 3, whose smallest two-sided p is 0.1) is "not enough repeats to judge",
  never a regression. ``--strict`` makes such cells fail the gate too, and also a
  "possible regression": slower with confidence, but by an amount the interval does not
  place beyond the threshold.

Verdicts: regressed / improved (interval beyond the threshold), possible regression /
possible improvement (interval excludes 1 and crosses the threshold), within threshold
(excludes 1, inside the threshold), unchanged (includes 1), and for failed cells broke,
fixed, failed in both.

Each timing pair also shows its noise floor: the larger relative range (max - min over the
median) of the two sides' judged samples. A change smaller than that leaves the two sides'
processes overlapping, which is why it is not a verdict.

A cell that ran on BASE but failed on NEW (out of memory, error) counts as a regression;
cells present on one side only are listed and are not an error. The threshold is what
keeps small real differences (and the chance ones among many cells) from failing a CI job.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.report.results import ENVIRONMENT_FACTS, Metric, resolve_metric
from mixbench.runs.rows import plain

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ALPHA = 0.05
# What a cell measures: never paired across, even when it is constant within each run.
MEASURED_FIELDS = frozenset({"mixer", "optimizer", "task", "tokens", "grid", "level", "mode"})
POOLED_FIELDS = frozenset({"repeat", "seed"})
BOOKKEEPING_FIELDS = frozenset({"out", "json", "quiet", "timeout", "run_id", "repeats"})
REGRESSION_VERDICTS = frozenset({"regressed", "broke"})
NOT_JUDGEABLE = "not enough repeats to judge"
POSSIBLE_REGRESSION = "possible regression"
# What must be equal for the reference workload to mean the same on both sides.
DRIFT_FACTS = ("device_name", "cpu", "torch_version")
REFERENCE_WORKLOAD = "measurement.reference_workload"
EXACT_MAX_SAMPLES = 40  # above this many samples in all, the normal approximation


@dataclass(frozen=True)
class MannWhitney:
    """Result of a two-sided Mann-Whitney U test (normal approximation)."""

    u: float  # U statistic of the first sample
    z: float  # standardised |U - mean|, after tie and continuity corrections
    p: float  # two-sided p-value


def mann_whitney_u(
    x: Sequence[float], y: Sequence[float], *, exact: bool | None = None
) -> MannWhitney:
    """Two-sided Mann-Whitney U test: exact for small samples, else the normal approximation.

    ``exact=None`` chooses as scipy's ``method="auto"`` does: the exact null distribution of
    U when there are no ties and both samples have at most 8 values (where the normal
    approximation is poor: with 3 seeds a side no p-value below 0.1 exists), else the
    normal approximation with tie correction.

    U counts the pairs (x_i, y_j) with x_i > y_j (ties count a half). Under the null
    hypothesis that both samples come from one distribution, U has mean n1 n2 / 2 and
    variance n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))), t running over the sizes of
    groups of tied values (Lehmann, *Nonparametrics*, 1975, ch. 1). A continuity correction
    of 1/2 is applied, as in most statistics packages. Adequate from about eight samples
    per side; below that the p-value is approximate.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs at least one value on each side")
    pooled = sorted([(float(v), 0) for v in x] + [(float(v), 1) for v in y])
    n = n1 + n2
    rank_sum_x = 0.0
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        average_rank = (i + j) / 2 + 1  # ranks are 1-based
        size = j - i + 1
        tie_term += size**3 - size
        rank_sum_x += average_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    if exact is None:
        exact = tie_term == 0 and max(n1, n2) <= 8
    if exact:
        if tie_term:
            raise ValueError("the exact Mann-Whitney test needs values without ties")
        return MannWhitney(u=u, z=math.nan, p=_exact_p(u, n1, n2))
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value tied: no evidence of any difference
        return MannWhitney(u=u, z=0.0, p=1.0)
    z = max(abs(u - mean) - 0.5, 0.0) / math.sqrt(variance)
    p = min(1.0, math.erfc(z / math.sqrt(2)))  # two-sided: 2 * (1 - Phi(z))
    return MannWhitney(u=u, z=z, p=p)


def _u_counts(n1: int, n2: int) -> list[int]:
    """counts[k]: the number of orderings of n1 x-values and n2 y-values (no ties) with
    U = k, by the recurrence on the largest value: it is either an x (adding n2' to U) or
    a y. Under the null hypothesis every ordering is equally likely."""
    counts = [[[1] if m == 0 or n == 0 else [] for n in range(n2 + 1)] for m in range(n1 + 1)]
    for m in range(1, n1 + 1):
        for n in range(1, n2 + 1):
            with_x = [0] * n + counts[m - 1][n]  # the largest value is an x: U grows by n
            without = counts[m][n - 1]
            size = max(len(with_x), len(without))
            counts[m][n] = [
                (with_x[k] if k < len(with_x) else 0) + (without[k] if k < len(without) else 0)
                for k in range(size)
            ]
    return counts[n1][n2]


def _exact_p(u: float, n1: int, n2: int) -> float:
    """Two-sided p-value of U from its exact null distribution (no ties)."""
    table = _u_counts(n1, n2)
    total = math.comb(n1 + n2, n1)
    k = round(u)
    lower = sum(table[: k + 1]) / total
    upper = sum(table[k:]) / total
    return min(1.0, 2 * min(lower, upper))


def rank_test_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney test, exact even with ties.

    The null distribution is that of the rank sum of ``x`` over all C(n, n1) equally likely
    ways to split the pooled mid-ranks, counted by dynamic programming over (subset size,
    rank sum) on doubled ranks (integers, since a mid-rank is a multiple of 1/2). Two-sided:
    the probability of a rank sum at least as far from its mean as the one observed. Above
    ``EXACT_MAX_SAMPLES`` values in all, the normal approximation (``mann_whitney_u``).
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("the rank test needs at least one value on each side")
    if n1 + n2 > EXACT_MAX_SAMPLES:
        return mann_whitney_u(x, y, exact=False).p
    pooled = sorted([(float(v), 0) for v in x] + [(float(v), 1) for v in y])
    doubled: list[int] = []  # 2 x mid-rank of each pooled value, in pooled order
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        doubled.extend([i + j + 2] * (j - i + 1))
        i = j + 1
    observed = sum(r for r, (_, side) in zip(doubled, pooled, strict=True) if side == 0)
    mean2 = n1 * (n1 + n2 + 1)  # 2 x the rank sum's mean, so |S - mean| compares exactly
    ways: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(n1)]
    for rank in doubled:
        for size in range(min(n1, len(doubled)), 0, -1):
            for total, count in ways[size - 1].items():
                ways[size][total + rank] = ways[size].get(total + rank, 0) + count
    extreme = sum(
        count for total, count in ways[n1].items() if abs(total - mean2) >= abs(observed - mean2)
    )
    return min(1.0, extreme / math.comb(n1 + n2, n1))


def smallest_p(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the exact test can give for these sample sizes."""
    return min(1.0, 2 / math.comb(n1 + n2, n1))


@dataclass(frozen=True)
class RatioInterval:
    """How much larger NEW is than BASE, as a ratio, with its confidence interval."""

    estimate: float  # Hodges-Lehmann: the median of NEW_j / BASE_i over all pairs
    low: float
    high: float
    coverage: float  # the interval's exact confidence level (at least 1 - alpha)


def ratio_interval(
    base: Sequence[float], new: Sequence[float], alpha: float = ALPHA
) -> RatioInterval | None:
    """The Hodges-Lehmann estimate of the ratio NEW / BASE and its distribution-free
    confidence interval, or None when the sample sizes allow no interval at ``1 - alpha``.

    The shift of log values is estimated by the median of the n1 n2 pairwise differences
    log y_j - log x_i, and the interval is [D(k), D(n1 n2 + 1 - k)] of the sorted
    differences, k - 1 being the largest u with P(U <= u) <= alpha / 2 under the exact null
    distribution of the Mann-Whitney U (Hollander & Wolfe, *Nonparametric Statistical
    Methods*, sec. 4.3; the normal approximation beyond ``EXACT_MAX_SAMPLES`` values). It
    is the set of ratios r for which the exact test would not tell NEW / r from BASE: an
    interval above 1 + t says, at this confidence, that NEW is slower by more than t. With
    5 a side it is [D(3), D(23)] at 96.8 %; with 4, [min, max] at 97.1 %; 3 a side give none.

    Times and rates are positive. A metric that can be zero or negative (a training
    accuracy of 0) is shifted rather than scaled: the same interval of the differences
    y_j - x_i, read as ratios 1 + d / |median(BASE)| (None when that median is 0).
    """
    n1, n2 = len(base), len(new)
    if n1 == 0 or n2 == 0:
        raise ValueError("a ratio interval needs at least one value on each side")
    scaled = min(*base, *new) > 0
    center = abs(statistics.median(base))
    if not scaled and center == 0:
        return None
    if scaled:
        differences = sorted(math.log(y) - math.log(x) for x in base for y in new)
    else:
        differences = sorted(y - x for x in base for y in new)
    pairs = n1 * n2
    if n1 + n2 > EXACT_MAX_SAMPLES:
        normal, mean = statistics.NormalDist(), pairs / 2
        sd = math.sqrt(pairs * (n1 + n2 + 1) / 12)
        k = math.floor(mean - normal.inv_cdf(1 - alpha / 2) * sd - 0.5) + 1
        tail = normal.cdf((k - 0.5 - mean) / sd)
    else:
        total = math.comb(n1 + n2, n1)
        below, k = 0, 0  # k: how many values of U have P(U <= u) <= alpha / 2
        for count in _u_counts(n1, n2):
            if 2 * (below + count) > alpha * total:
                break
            below, k = below + count, k + 1
        tail = below / total
    if k < 1:
        return None

    def ratio(difference: float) -> float:
        return math.exp(difference) if scaled else 1 + difference / center

    return RatioInterval(
        estimate=ratio(statistics.median(differences)),
        low=ratio(differences[k - 1]),
        high=ratio(differences[pairs - k]),
        coverage=1 - 2 * tail,
    )


def parse_threshold(text: str) -> float:
    """``"5%"``, ``"5"`` and ``"0.05"`` all mean five per cent."""
    raw = text.strip()
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise UsageError(f"--threshold: {text!r} is not a percentage (e.g. 5%)") from None
    if raw.endswith("%") or value >= 1:
        value /= 100
    if not 0 <= value < 10:
        raise UsageError(f"--threshold: {text!r} must be a non-negative percentage")
    return value


@dataclass
class Side:
    """One cell on one side of the comparison, its repeats or seeds pooled."""

    status: str
    value: float
    values: list[float]
    samples: list[float]  # process-level samples of a timing metric (one per process)
    count: int
    # The reference workload's time in each of those processes (mixbench.measure.reference),
    # aligned with ``samples``; empty when any row lacks it (from before references).
    references: list[float] = field(default_factory=list)

    @property
    def spread(self) -> float | None:
        """Relative range of the process-level samples (None below two)."""
        from mixbench.runs.repeats import relative_range

        return relative_range(self.samples)


@dataclass
class Pair:
    """A cell found in both runs, and the verdict on its change."""

    label: dict[str, Any]
    base: Side
    new: Side
    ratio: float  # new / base of the two sides' values, as measured
    p: float | None  # the rank test on the judged samples
    verdict: str  # regressed | improved | unchanged | within threshold | possible ... | ...
    # The machine's speed NEW / BASE (reference workload, median over processes) the judged
    # samples were corrected for; None when they were not.
    drift: float | None = None
    interval: RatioInterval | None = None  # of the judged ratio; None when none is possible
    noise: float | None = None  # the larger relative range of the judged samples' sides

    @property
    def regressed(self) -> bool:
        return self.verdict in REGRESSION_VERDICTS


@dataclass
class Comparison:
    """Every pair, the one-sided cells, and how the two runs differ."""

    metric: Metric
    threshold: float
    alpha: float
    pairs: list[Pair]
    only_base: list[dict[str, Any]] = field(default_factory=list)
    only_new: list[dict[str, Any]] = field(default_factory=list)
    paired_across: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    environment: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    uncorrected: str | None = None  # why timings were not drift-corrected (None: they were)

    @property
    def regressions(self) -> list[Pair]:
        return [p for p in self.pairs if p.regressed]

    @property
    def inconclusive(self) -> list[Pair]:
        """Cells the gate could not clear: too few repeats, or a possible regression."""
        return [p for p in self.pairs if p.verdict in (NOT_JUDGEABLE, POSSIBLE_REGRESSION)]

    @property
    def drift(self) -> float | None:
        """The machine's speed NEW / BASE over the corrected cells (median), or None."""
        drifts = [p.drift for p in self.pairs if p.drift is not None]
        return statistics.median(drifts) if drifts else None

    @property
    def exit_code(self) -> int:
        """1 when any cell regressed (for CI), else 0."""
        return 1 if self.regressions else 0

    def gate(self, *, strict: bool = False) -> int:
        """The exit status of a CI gate: 1 on a regression, or (``strict``) on a cell it
        could not clear (not enough repeats, or a possible regression); else 0."""
        return 1 if self.regressions or (strict and self.inconclusive) else 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for pair in self.pairs:
            out[pair.verdict] = out.get(pair.verdict, 0) + 1
        return out


def compare_results(
    base: pd.DataFrame,
    new: pd.DataFrame,
    *,
    metric: str | None = "latency",
    threshold: float = 0.05,
    alpha: float = ALPHA,
    drift_correction: bool = True,
) -> Comparison:
    """Pair the cells of two result frames (from ``load_results``) and judge each change
    (``drift_correction=False``: judge timings as measured, ignoring the reference)."""
    kind = _common_kind(base, new)
    base, new = base[base["kind"] == kind], new[new["kind"] == kind]
    chosen = resolve_metric(metric, kind, [*base.columns, *new.columns])
    for name, frame in (("BASE", base), ("NEW", new)):
        if chosen.name not in frame.columns:
            raise UsageError(f"--metric: {name} has no {chosen.name!r} column")
    config = sorted(
        set(base.attrs.get("config_columns", ())) | set(new.attrs.get("config_columns", ()))
    )
    if not config:
        raise UsageError("cannot tell which columns are the configuration of these results")
    across = _run_level_differences(base, new, config)
    identity = [
        c
        for c in config
        if c not in across
        and c not in POOLED_FIELDS
        and c not in BOOKKEEPING_FIELDS
        and c in base.columns
        and c in new.columns
    ]
    base_cells = _cells(base, identity, chosen, kind)
    new_cells = _cells(new, identity, chosen, kind)
    shown = _label_fields(identity, [*base_cells, *new_cells])
    environment = {}
    for fact in ENVIRONMENT_FACTS:
        old, now = _constant(base, fact), _constant(new, fact)
        if old != now:
            environment[fact] = (old, now)
    blocked = _drift_blocked(base, new, environment) if chosen.timing else None
    if chosen.timing and not drift_correction:
        blocked = "drift correction turned off: judged as measured"
    pairs = []
    for key in base_cells:
        if key in new_cells:
            label = {name: value for name, value in key if name in shown}
            pairs.append(
                _judge(
                    label,
                    base_cells[key],
                    new_cells[key],
                    chosen,
                    threshold,
                    alpha,
                    correct=chosen.timing and blocked is None,
                )
            )
    only_base = [{n: v for n, v in k if n in shown} for k in base_cells if k not in new_cells]
    only_new = [{n: v for n, v in k if n in shown} for k in new_cells if k not in base_cells]
    uncorrected = blocked
    if chosen.timing and blocked is None:
        missing = sum(p.drift is None and p.base.status == p.new.status == "ok" for p in pairs)
        if missing:
            uncorrected = (
                f"{missing} cell(s) have no reference workload on a side (rows from before "
                "mixbench timed one, or R = 1): judged as measured"
            )
    return Comparison(
        chosen, threshold, alpha, pairs, only_base, only_new, across, environment, uncorrected
    )


def _drift_blocked(
    base: pd.DataFrame, new: pd.DataFrame, environment: dict[str, tuple[Any, Any]]
) -> str | None:
    """Why the reference workload cannot correct drift between these runs, or None.

    It measures the machine only when it is the same workload on the same hardware and
    torch (a torch upgrade that slows every matmul would otherwise be corrected away)."""
    differing = [fact for fact in DRIFT_FACTS if fact in environment]
    if differing:
        return f"runs differ in {', '.join(differing)}: not drift-corrected"
    workloads = {
        str(v)
        for frame in (base, new)
        if REFERENCE_WORKLOAD in frame.columns
        for v in frame[REFERENCE_WORKLOAD].dropna()
    }
    if len(workloads) > 1:
        return "the runs timed different reference workloads: not drift-corrected"
    return None


def _common_kind(base: pd.DataFrame, new: pd.DataFrame) -> str:
    kinds = []
    for name, frame in (("BASE", base), ("NEW", new)):
        if frame.empty or "kind" not in frame.columns:
            raise UsageError(f"{name}: no readable results")
        kinds.append(set(frame["kind"].dropna()))
    common = kinds[0] & kinds[1]
    if not common:
        raise UsageError("BASE and NEW hold different kinds of results; nothing to pair")
    return "bench" if "bench" in common else sorted(common)[0]


def _constant(frame: pd.DataFrame, name: str) -> Any:
    """The single value of a column (a tuple of values when it has several)."""
    if name not in frame.columns:
        return None
    values = sorted({str(v) for v in frame[name]})
    return values[0] if len(values) == 1 else tuple(values)


def _run_level_differences(
    base: pd.DataFrame, new: pd.DataFrame, config: list[str]
) -> dict[str, tuple[Any, Any]]:
    """Settings constant within each run but different between them: what is compared."""
    across = {}
    for name in config:
        if name in MEASURED_FIELDS or name in POOLED_FIELDS or name in BOOKKEEPING_FIELDS:
            continue
        in_base, in_new = name in base.columns, name in new.columns
        if in_base and in_new:
            if base[name].nunique(dropna=False) == 1 and new[name].nunique(dropna=False) == 1:
                old, now = base[name].iloc[0], new[name].iloc[0]
                if str(old) != str(now):
                    across[name] = (plain(old), plain(now))
        elif in_base != in_new:  # an option one side's version did not record
            frame = base if in_base else new
            if frame[name].nunique(dropna=False) == 1:
                value = plain(frame[name].iloc[0])
                across[name] = (value, None) if in_base else (None, value)
    return across


def _cells(
    frame: pd.DataFrame, identity: list[str], metric: Metric, kind: str
) -> dict[tuple[tuple[str, Any], ...], Side]:
    import pandas as pd

    cells: dict[tuple[tuple[str, Any], ...], Side] = {}
    if frame.empty:
        return cells
    for labels, group in frame.groupby(identity, dropna=False, sort=False):
        labels = labels if isinstance(labels, tuple) else (labels,)
        key = tuple((n, _key_value(v)) for n, v in zip(identity, labels, strict=True))
        values = pd.to_numeric(group[metric.name], errors="coerce")
        ok = (group["status"] == "ok").to_numpy() & values.notna().to_numpy()
        good = [float(v) for v in values[ok]]
        samples: list[float] = []
        references: list[float] | None = []
        if metric.timing:
            for record in group[ok].to_dict("records"):
                measured = _process_samples(record, metric)
                samples.extend(measured)
                found = _process_references(record)
                if references is not None and len(found) == len(measured):
                    references.extend(found)
                else:
                    references = None  # one row without: the side cannot be corrected
        if not good:
            statuses = group["status"][group["status"] != "ok"]
            status = str(statuses.mode().iloc[0]) if len(statuses) else "missing"
            cells[key] = Side(status, math.nan, [], [], len(group))
            continue
        center = sum(good) / len(good) if kind == "train" else float(pd.Series(good).median())
        cells[key] = Side("ok", center, good, samples, len(group), references or [])
    return cells


def _process_references(record: dict[str, Any]) -> list[float]:
    """A row's reference workload time in each of its processes (see ``_process_samples``
    for which rows have several), or nothing when it has none."""
    several = record.get("process_references_ms")
    if isinstance(several, list):
        return [float(v) for v in several]
    one = record.get("measurement.reference_ms")
    if isinstance(one, (int, float)) and not math.isnan(one) and one > 0:
        return [float(one)]
    return []


def _process_samples(record: dict[str, Any], metric: Metric) -> list[float]:
    """A row's value of ``metric`` in each of its processes: the row's value rescaled by
    each process's median latency (a latency scales with it, a rate inversely). A row
    without process data (from before process repeats, or one process) is one sample."""
    value = float(record[metric.name])
    medians = record.get("process_medians_ms")
    center = record.get("latency_ms_median")
    if not isinstance(medians, list) or len(medians) < 2 or not center:
        return [value]
    if metric.higher_is_better:
        return [value * float(center) / m for m in medians if m]
    return [value * float(m) / float(center) for m in medians]


def _label_fields(identity: list[str], keys: list[tuple[tuple[str, Any], ...]]) -> list[str]:
    """The identity fields needed to tell the cells apart, mixer first.

    A field is shown only when it separates cells the fields already shown do not (the
    token grid follows the token count, so it is left out for 1-D runs).
    """
    priority = [n for n in ("mixer", "optimizer", "task", "tokens") if n in identity]
    shown: list[str] = ["mixer"] if "mixer" in identity else []
    records = [dict(k) for k in keys]
    for name in dict.fromkeys(priority + identity):
        if name in shown:
            continue
        seen: dict[tuple[Any, ...], Any] = {}
        for record in records:
            prefix = tuple(record.get(n) for n in shown)
            if seen.setdefault(prefix, record.get(name)) != record.get(name):
                shown.append(name)
                break
    return shown or identity[:1]


def _judge(
    label: dict[str, Any],
    base: Side,
    new: Side,
    metric: Metric,
    threshold: float,
    alpha: float,
    *,
    correct: bool = False,
) -> Pair:
    """The verdict on one pair (module docstring): from the confidence interval of the
    ratio, on drift-corrected process samples when ``correct`` and both sides have them."""
    if base.status != "ok" or new.status != "ok":
        verdict = (
            "failed in both"
            if base.status != "ok" and new.status != "ok"
            else "broke"
            if base.status == "ok"
            else "fixed"
        )
        return Pair(label, base, new, math.nan, None, verdict)
    ratio = new.value / base.value if base.value else (math.inf if new.value else 1.0)
    if metric.deterministic:
        changed, worse = new.value != base.value, _worse(ratio, metric)
        beyond = abs(ratio - 1) > threshold
        verdict = "unchanged" if not changed else _beyond(worse) if beyond else "within threshold"
        return Pair(label, base, new, ratio, None, verdict)
    x, y = (base.samples, new.samples) if metric.timing else (base.values, new.values)
    drift = None
    if correct and base.references and new.references:
        drift = statistics.median(new.references) / statistics.median(base.references)
        x = _corrected(x, base.references, metric)
        y = _corrected(y, new.references, metric)
    from mixbench.runs.repeats import relative_range

    spreads = [s for s in (relative_range(x), relative_range(y)) if s is not None]
    noise = max(spreads) if spreads else None
    p = rank_test_p(x, y) if min(len(x), len(y)) >= 2 else None
    interval = ratio_interval(x, y, alpha) if p is not None else None
    if interval is None:  # R = 1 on a side, or too few repeats for any interval at alpha
        verdict = NOT_JUDGEABLE
    elif interval.low > 1 + threshold or interval.high < 1 - threshold:
        verdict = _beyond(_worse(interval.estimate, metric))
    elif interval.low <= 1 <= interval.high:
        verdict = "unchanged"
    elif interval.low >= 1 - threshold and interval.high <= 1 + threshold:
        verdict = "within threshold"
    else:
        worse = _worse(interval.estimate, metric)
        verdict = POSSIBLE_REGRESSION if worse else "possible improvement"
    return Pair(label, base, new, ratio, p, verdict, drift, interval, noise)


def _worse(ratio: float, metric: Metric) -> bool:
    return ratio < 1 if metric.higher_is_better else ratio > 1


def _beyond(worse: bool) -> str:
    return "regressed" if worse else "improved"


def _corrected(
    samples: Sequence[float], references: Sequence[float], metric: Metric
) -> list[float]:
    """Each process's sample in units of its own reference workload time: a latency
    divided by it, a rate multiplied by it, so a machine running slower for a while cancels."""
    if metric.higher_is_better:
        return [s * r for s, r in zip(samples, references, strict=True)]
    return [s / r for s, r in zip(samples, references, strict=True)]


def _key_value(value: Any) -> Any:
    """A label value that compares equal to itself (NaN and None both become None)."""
    value = plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


# -- rendering ---------------------------------------------------------------------------

_STYLE = {
    "regressed": "bold red",
    "broke": "bold red",
    POSSIBLE_REGRESSION: "yellow",
    "improved": "green",
    "fixed": "green",
}


def format_interval(interval: RatioInterval) -> str:
    """``1.031 [0.982, 1.080]``: the estimated ratio and its confidence interval."""
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def render_comparison(comparison: Comparison, console: Any) -> None:
    """Print the comparison as a rich table with a summary (for the CLI)."""
    from rich.markup import escape
    from rich.table import Table

    from mixbench.report.leaderboard import format_number

    metric = comparison.metric
    scale = metric.display_scale
    for name, (old, now) in comparison.paired_across.items():
        console.print(f"paired across differing [bold]{name}[/]: {old} → {now}")
    for name, (old, now) in comparison.environment.items():
        console.print(f"[yellow]runs differ in {name}:[/] {escape(str(old))} → {escape(str(now))}")
    if metric.timing:
        drift = comparison.drift
        if drift is not None:
            console.print(
                f"machine drift NEW/BASE: {drift:.3f} (reference workload timed in every "
                "process; each process's time is divided by its own before judging)"
            )
        if comparison.uncorrected:
            console.print(f"[yellow]{escape(comparison.uncorrected)}[/]")
    table = Table(
        title=f"{metric.title()} · {metric.arrow} {metric.direction} · "
        f"threshold {comparison.threshold:.1%}, alpha {comparison.alpha} · new/base: as "
        "measured · machine: reference workload new/base · judged: estimated ratio "
        f"\\[interval at >= {1 - comparison.alpha:.0%}], drift-corrected where machine is "
        "shown · R: processes base/new · noise: (max-min)/median of a side's judged "
        "samples, the larger",
        title_justify="left",
    )
    columns = ("cell", "base", "new", "new/base", "machine", "judged", "R", "noise", "p", "verdict")
    for column in columns:
        table.add_column(column, justify="left" if column in ("cell", "verdict") else "right")
    for pair in comparison.pairs:
        label = " ".join(f"{k}={v}" for k, v in pair.label.items())
        base = (
            format_number(pair.base.value * scale)
            if pair.base.status == "ok"
            else (pair.base.status)
        )
        new = (
            format_number(pair.new.value * scale) if pair.new.status == "ok" else (pair.new.status)
        )
        ratio = "" if math.isnan(pair.ratio) else f"{pair.ratio:.3f}"
        machine = "" if pair.drift is None else f"{pair.drift:.3f}"
        judged = "" if pair.interval is None else format_interval(pair.interval)
        p = "" if pair.p is None else f"{pair.p:.2g}"
        style = _STYLE.get(pair.verdict, "")
        verdict = f"[{style}]{pair.verdict}[/]" if style else pair.verdict
        repeats = f"{len(pair.base.samples)}/{len(pair.new.samples)}" if metric.timing else ""
        noise = "" if pair.noise is None else f"{pair.noise:.1%}"
        table.add_row(
            escape(label), base, new, ratio, machine, escape(judged), repeats, noise, p, verdict
        )
    console.print(table)
    for side, cells in (("BASE", comparison.only_base), ("NEW", comparison.only_new)):
        for cell in cells:
            console.print(
                f"only in {side}: " + escape(" ".join(f"{k}={v}" for k, v in cell.items()))
            )
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(comparison.counts().items()))
    outcome = (
        f"[bold red]{len(comparison.regressions)} regression(s)[/]"
        if comparison.regressions
        else "[green]no regression[/]"
    )
    console.print(f"{len(comparison.pairs)} paired cell(s): {counts or 'none'}; {outcome}")
    unjudged = sum(p.verdict == NOT_JUDGEABLE for p in comparison.pairs)
    if unjudged:
        console.print(
            f"{unjudged} cell(s): {NOT_JUDGEABLE} (R = processes per side; the exact test "
            "needs R >= 4 a side to reach p < 0.05: run mixbench bench --processes 5 or more)"
        )
    possible = sum(p.verdict == POSSIBLE_REGRESSION for p in comparison.pairs)
    if possible:
        console.print(
            f"{possible} cell(s): {POSSIBLE_REGRESSION} (slower, but the confidence interval "
            "reaches below the threshold; more processes would tell; --strict fails on it)"
        )
