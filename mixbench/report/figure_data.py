"""What each figure shows, independent of how it is drawn.

The PNG figures (``mixbench.report.plots``, matplotlib) and the HTML report's interactive charts
(``mixbench.report.site``, plotly.js) draw the same series: per mixer, a metric against token count
with its 95 % confidence interval and fitted exponent; per mixer and optimizer, validation
accuracy against step and wall time; per task, accuracy against training throughput with
the Pareto front. Computing them once here keeps the two renderings from disagreeing.
Nothing here imports matplotlib, plotly or torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.measure.stats import loglog_slope

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mixbench.report.leaderboard import Leaderboard

__all__ = [
    "CurveSeries",
    "ParetoPanel",
    "ScalingSeries",
    "curve_points",
    "curve_series",
    "pareto_front",
    "pareto_panels",
    "scaling_series",
]


@dataclass(frozen=True)
class ScalingSeries:
    """One mixer's metric against token count, in display units."""

    label: str
    tokens: list[float]
    values: list[float]
    low: list[float]  # 95 % CI of the median; NaN where the rows have none
    high: list[float]
    exponent: float | None  # slope of log value against log N over the largest three N

    @property
    def has_ci(self) -> bool:
        return all(math.isfinite(v) for v in (*self.low, *self.high))


def scaling_series(
    frame: pd.DataFrame, metric: str = "latency_ms_median"
) -> tuple[Leaderboard, list[ScalingSeries]]:
    """The leaderboard of ``metric`` by token count and one series per row of it."""
    from mixbench.report.leaderboard import build_leaderboard

    board = build_leaderboard(frame, kind="bench", metric=metric)
    if board.column_field != "tokens":
        raise UsageError("a scaling plot needs bench results with a 'tokens' column")
    scale = board.metric.display_scale
    series = []
    for row in board.row_order:
        cells = [board.cell(row, t) for t in board.columns]
        points = [
            (float(c["tokens"]), c["value"] * scale, c["low"] * scale, c["high"] * scale)
            for c in cells
            if c is not None and c["status"] == "ok"
        ]
        if not points:
            continue
        xs, ys, lows, highs = (list(v) for v in zip(*points, strict=True))
        extra = [f"{f}={v}" for f, v in zip(board.row_fields[1:], row[1:], strict=True)]
        label = " ".join([str(row[0]), *extra])
        series.append(ScalingSeries(label, xs, ys, lows, highs, loglog_slope(xs, ys)))
    if not series:
        raise UsageError(f"no finished bench cells with {board.metric.name} to plot")
    return board, series


def curve_points(path: str | None) -> list[dict[str, float]]:
    """The evaluation points of a curves file, as records with step, time_s and val_acc.

    The training runner stores columns (``{"eval": {"step": [...], "val_acc": [...]}}``);
    a list of records is accepted as well.
    """
    if not isinstance(path, str):
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    records: list[Any] = []
    sections = (
        [data] if isinstance(data, list) else list(data.values()) if isinstance(data, dict) else []
    )
    for section in sections:
        if isinstance(section, list):
            records.extend(section)
        elif isinstance(section, dict) and isinstance(section.get("val_acc"), list):
            columns = {k: v for k, v in section.items() if isinstance(v, list)}
            records.extend(
                dict(zip(columns, values, strict=False))
                for values in zip(*columns.values(), strict=False)
            )
    points = [
        p
        for p in records
        if isinstance(p, dict) and p.get("step") is not None and p.get("val_acc") is not None
    ]
    return sorted(points, key=lambda p: p["step"])


@dataclass(frozen=True)
class CurveSeries:
    """Validation accuracy (%) of one mixer/optimizer(/task): mean, min and max over seeds at
    the steps every seed evaluated, with the mean wall time to reach each step."""

    label: str
    keys: tuple[str, ...]  # (mixer, optimizer[, task]): what the label joins
    seeds: int
    steps: list[float]
    accuracy: list[float]
    low: list[float]
    high: list[float]
    time_s: list[float]


def curve_series(frame: pd.DataFrame) -> list[CurveSeries]:
    """One series per mixer and optimizer (and task, when several), from the curves files."""
    train = frame[frame["kind"] == "train"] if "kind" in frame.columns else frame
    if train.empty or "curves_file" not in train.columns:
        raise UsageError("a curves plot needs train results (mixbench train) with curves")
    fields = [
        f
        for f in ("mixer", "optimizer", "task")
        if f in train.columns and (f != "task" or train[f].nunique() > 1)
    ]
    series = []
    for labels, group in train.groupby(fields, sort=True):
        runs = [pts for pts in map(curve_points, group["curves_file"]) if pts]
        if not runs:
            continue
        steps = sorted(set.intersection(*({p["step"] for p in run} for run in runs)))
        if not steps:
            continue
        by_step = [{p["step"]: p for p in run} for run in runs]
        accs = [[100.0 * r[s]["val_acc"] for r in by_step] for s in steps]
        times = [[r[s].get("time_s", math.nan) for r in by_step] for s in steps]
        labels = labels if isinstance(labels, tuple) else (labels,)
        series.append(
            CurveSeries(
                label=" / ".join(str(v) for v in labels),
                keys=tuple(str(v) for v in labels),
                seeds=len(runs),
                steps=[float(s) for s in steps],
                accuracy=[sum(a) / len(a) for a in accs],
                low=[min(a) for a in accs],
                high=[max(a) for a in accs],
                time_s=[sum(t) / len(t) for t in times],
            )
        )
    if not series:
        raise UsageError("no readable training curves (curves_file) in these results")
    return series


@dataclass(frozen=True)
class ParetoPanel:
    """Per task: one point per mixer and optimizer (mean over seeds) and the front."""

    task: str | None
    points: pd.DataFrame  # columns mixer, optimizer, throughput, accuracy (%)
    front: list[tuple[float, float]]
    unit: str
    rows: pd.DataFrame  # the train rows behind the points


def _throughput(train: pd.DataFrame) -> tuple[pd.Series, str]:
    """Training throughput per row in samples/s, from the median step time and batch size."""
    import pandas as pd

    batch = next((c for c in ("metrics.batch_size", "batch_size") if c in train.columns), None)
    if "median_step_s" in train.columns and batch is not None:
        step_s = pd.to_numeric(train["median_step_s"], errors="coerce")
        return pd.to_numeric(train[batch], errors="coerce") / step_s, "samples/s"
    if {"steps", "train_time_s"} <= set(train.columns):
        return (
            pd.to_numeric(train["steps"], errors="coerce")
            / pd.to_numeric(train["train_time_s"], errors="coerce")
        ), "steps/s"
    raise UsageError(
        "a pareto plot needs median_step_s and batch_size (or train_time_s) in the train rows"
    )


def pareto_panels(frame: pd.DataFrame, metric: str = "final_val_acc") -> list[ParetoPanel]:
    """Accuracy (%) against training throughput, one panel per task."""
    if "kind" not in frame.columns or metric not in frame.columns:
        raise UsageError(f"a pareto plot needs train results with {metric!r}")
    train = frame[(frame["kind"] == "train") & (frame["status"] == "ok")].copy()
    if train.empty:
        raise UsageError("a pareto plot needs finished train results")
    train["throughput"], unit = _throughput(train)
    train["accuracy"] = 100.0 * train[metric].astype(float)
    tasks = sorted(train["task"].dropna().unique()) if "task" in train.columns else [None]
    panels = []
    for task in tasks:
        rows = train if task is None else train[train["task"] == task]
        points = (
            rows.groupby(["mixer", "optimizer"])[["throughput", "accuracy"]]
            .mean()
            .dropna()
            .reset_index()
        )
        pairs = list(zip(points["throughput"], points["accuracy"], strict=True))
        panels.append(ParetoPanel(task, points, pareto_front(pairs), unit, rows))
    return panels


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both throughput and accuracy, by throughput."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return sorted(front)
