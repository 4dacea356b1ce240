"""Figures for papers and READMEs: scaling, memory, training curves, accuracy vs throughput.

matplotlib is an optional extra (``pip install 'mixbench[plot]'``); without it every entry
point raises a UsageError saying so. Figures are built with the object-oriented API
(``matplotlib.figure.Figure``, no pyplot), so calling these from a notebook neither switches
the backend nor leaks global state, and PNGs are written at 200 dpi.

Every figure labels its axes with units, uses log scales where the data span decades (token
counts and latencies do; accuracies do not), has a legend, and states in its title what was
measured and on what. The scaling and memory plots put each mixer's fitted exponent (slope
of log y against log N over the largest three token counts, where fixed costs no longer
hide the asymptote) in the legend, next to the complexity a reader expects.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.measure.stats import loglog_slope
from mixbench.results import METRICS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_KINDS = ("scaling", "memory", "curves", "pareto")
DPI = 200
INSTALL_HINT = "plotting needs matplotlib: pip install 'mixbench[plot]'"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def require_matplotlib() -> None:
    """Fail with the install hint, before any work, when matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def _new_figure(panels: int = 1, rows: int = 1) -> tuple[Figure, list[Axes]]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    fig = Figure(figsize=(5.6 * panels, 4.8 * rows), layout="constrained")
    axes = fig.subplots(rows, panels, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _style(ax: Axes, index: int) -> dict[str, Any]:
    color = f"C{index % 10}"
    return {"color": color, "marker": MARKERS[index % len(MARKERS)], "markersize": 5}


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) >= 10


def _wrap(parts: Sequence[str], width: int = 80) -> str:
    """Context lines wrapped to the width of one panel, so a title never widens a figure."""
    return "\n".join(textwrap.fill(p, width) for p in parts if p)


def _context_text(frame: pd.DataFrame, kind: str) -> str:
    """Shared settings and the machine, as a small subtitle."""
    from mixbench.leaderboard import describe_environment, shared_context, shared_environment

    context = shared_context(frame, kind, exclude=("mixer", "optimizer", "task"))
    return _wrap(
        [
            " · ".join(f"{k}={v}" for k, v in context.items()),
            describe_environment(shared_environment(frame)),
        ]
    )


def _token_axis(ax: Axes, tokens: Sequence[float]) -> None:
    """Log base 2 (token counts are usually powers of two), ticks at the measured counts."""
    from matplotlib.ticker import FixedLocator, NullLocator

    values = sorted({float(t) for t in tokens if t > 0})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{int(v):,}" for v in values])
    ax.set_xlabel("tokens N (sequence length or grid size)")


def plot_scaling(
    frame: pd.DataFrame, metric: str = "latency_ms_median", title: str | None = None
) -> Figure:
    """One line per mixer of ``metric`` against token count, log-log, exponent in legend."""
    from mixbench.leaderboard import build_leaderboard, describe_environment

    board = build_leaderboard(frame, kind="bench", metric=metric)
    if board.column_field != "tokens":
        raise UsageError("a scaling plot needs bench results with a 'tokens' column")
    fig, (ax,) = _new_figure()
    title = title or (
        "Latency scaling" if metric == "latency_ms_median" else f"Scaling of {board.metric.label}"
    )
    scale = board.metric.display_scale
    all_y: list[float] = []
    with_ci = False
    for index, row in enumerate(board.row_order):
        cells = [board.cell(row, t) for t in board.columns]
        points = [
            (float(c["tokens"]), c["value"] * scale, c["low"] * scale, c["high"] * scale)
            for c in cells
            if c is not None and c["status"] == "ok"
        ]
        if not points:
            continue
        xs, ys, lows, highs = zip(*points, strict=True)
        all_y.extend(ys)
        slope = loglog_slope(xs, ys)
        label = " ".join(
            [str(row[0])] + [f"{f}={v}" for f, v in zip(board.row_fields[1:], row[1:], strict=True)]
        )
        if slope is not None:
            label += rf"  ($\propto N^{{{slope:.2f}}}$)"
        has_ci = all(math.isfinite(v) for v in (*lows, *highs))
        bars = (
            [
                [y - lo for y, lo in zip(ys, lows, strict=True)],
                [hi - y for y, hi in zip(ys, highs, strict=True)],
            ]
            if has_ci
            else None
        )
        with_ci = with_ci or has_ci
        ax.errorbar(xs, ys, yerr=bars, label=label, capsize=2, linewidth=1.5,
                    **_style(ax, index))  # fmt: skip
    if not all_y:
        raise UsageError(f"no finished bench cells with {board.metric.name} to plot")
    _token_axis(ax, board.columns)
    ax.set_yscale("log" if _spans_decades(all_y) or len(board.columns) > 2 else "linear")
    ax.set_ylabel(board.metric.title())
    ax.grid(True, which="both", alpha=0.3)
    legend_title = "mixer (fitted exponent, largest 3 N)"
    if with_ci:
        legend_title += "\nbars: 95% CI of the median"
    fig.legend(loc="outside lower center", ncols=2, title=legend_title, fontsize="small",
               title_fontsize="small")  # fmt: skip
    subtitle = _wrap(
        [
            " · ".join(f"{k}={v}" for k, v in board.context.items()),
            describe_environment(board.environment),
        ]
    )
    fig.suptitle(title, fontsize="medium")
    if subtitle:
        ax.set_title(subtitle, fontsize="x-small", color="0.3")
    if board.notes:
        fig.text(0.01, -0.02, "\n".join(board.notes), fontsize="x-small", va="top")
    return fig


def plot_memory(frame: pd.DataFrame) -> Figure:
    """Peak memory above baseline against token count, log-log, per mixer."""
    return plot_scaling(frame, metric="peak_mem_bytes", title="Peak memory scaling")


def _curve_points(path: str | None) -> list[dict[str, float]]:
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


def _mean_curve(runs: list[list[dict[str, float]]]) -> tuple[list[float], ...]:
    """Mean (and min, max) val_acc and time over seeds, at the steps every seed has."""
    steps = sorted(set.intersection(*({p["step"] for p in run} for run in runs)))
    by_step = [{p["step"]: p for p in run} for run in runs]
    mean_acc, low, high, mean_time = [], [], [], []
    for step in steps:
        accs = [100.0 * r[step]["val_acc"] for r in by_step]
        times = [r[step].get("time_s", math.nan) for r in by_step]
        mean_acc.append(sum(accs) / len(accs))
        low.append(min(accs))
        high.append(max(accs))
        mean_time.append(sum(times) / len(times))
    return [float(s) for s in steps], mean_acc, low, high, mean_time


def plot_curves(frame: pd.DataFrame) -> Figure:
    """Validation accuracy against step and against wall time, per mixer and optimizer."""
    train = frame[frame["kind"] == "train"] if "kind" in frame.columns else frame
    if train.empty or "curves_file" not in train.columns:
        raise UsageError("a curves plot needs train results (mixbench train) with curves")
    series_fields = [
        f
        for f in ("mixer", "optimizer", "task")
        if f in train.columns and (f != "task" or train[f].nunique() > 1)
    ]
    fig, (by_step, by_time) = _new_figure(panels=2)
    index, shaded = 0, False
    for labels, group in train.groupby(series_fields, sort=True):
        runs = [pts for pts in map(_curve_points, group["curves_file"]) if pts]
        if not runs:
            continue
        steps, acc, low, high, times = _mean_curve(runs)
        if not steps:
            continue
        labels = labels if isinstance(labels, tuple) else (labels,)
        label = " / ".join(str(v) for v in labels)
        if len(runs) > 1:
            label += f" ({len(runs)} seeds)"
        style = _style(by_step, index) | {"markersize": 3}
        by_step.plot(steps, acc, label=label, **style)
        by_time.plot(times, acc, label=label, **style)
        if len(runs) > 1:
            by_step.fill_between(steps, low, high, color=style["color"], alpha=0.15)
            by_time.fill_between(times, low, high, color=style["color"], alpha=0.15)
            shaded = True
        index += 1
    if index == 0:
        raise UsageError("no readable training curves (curves_file) in these results")
    by_step.set_xlabel("optimizer step")
    by_time.set_xlabel("wall time (s)")
    if _spans_decades(by_time.get_xlim()) and by_time.get_xlim()[0] > 0:
        by_time.set_xscale("log")
    for ax in (by_step, by_time):
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(True, alpha=0.3)
    handles, labels = by_step.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=3,
        fontsize="small",
        title="mixer / optimizer",
        title_fontsize="small",
    )
    tasks = (
        ", ".join(sorted(str(t) for t in train["task"].dropna().unique()))
        if ("task" in train.columns)
        else ""
    )
    fig.suptitle(
        f"Training curves{' on ' + tasks if tasks else ''}"
        + (" (line: mean over seeds; band: min to max)" if shaded else ""),
        fontsize="medium",
    )
    subtitle = _context_text(train, "train")
    if subtitle:
        by_step.set_title(subtitle, fontsize="x-small", color="0.3", loc="left")
    return fig


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


def plot_pareto(frame: pd.DataFrame, metric: str = "final_val_acc") -> Figure:
    """Accuracy against training throughput, one point per mixer/optimizer, front drawn."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if "kind" not in frame.columns or metric not in frame.columns:
        raise UsageError(f"a pareto plot needs train results with {metric!r}")
    train = frame[(frame["kind"] == "train") & (frame["status"] == "ok")].copy()
    if train.empty:
        raise UsageError("a pareto plot needs finished train results")
    train["_x"], unit = _throughput(train)
    train["_y"] = 100.0 * train[metric].astype(float)
    tasks = sorted(train["task"].dropna().unique()) if "task" in train.columns else [None]
    fig, axes = _new_figure(panels=len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        rows = train if task is None else train[train["task"] == task]
        points = rows.groupby(["mixer", "optimizer"])[["_x", "_y"]].mean().dropna()
        for index, ((mixer, optimizer), point) in enumerate(points.iterrows()):
            ax.plot(
                point["_x"],
                point["_y"],
                linestyle="none",
                label=f"{mixer} / {optimizer}",
                **_style(ax, index) | {"markersize": 7},
            )
        front = _pareto_front(list(zip(points["_x"], points["_y"], strict=True)))
        ax.step(
            [x for x, _ in front],
            [y for _, y in front],
            where="pre",
            color="0.4",
            linestyle="--",
            linewidth=1,
            label="Pareto front",
        )
        if _spans_decades(points["_x"].tolist()):
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.set_xlabel(f"training throughput ({unit}, higher is better)")
        ax.set_ylabel(f"{METRICS[metric].label if metric in METRICS else metric} (%)")
        subtitle = _context_text(rows, "train")
        ax.set_title(
            "\n".join(filter(None, [f"on {task}" if task else "", subtitle])),
            fontsize="x-small",
            color="0.3",
        )
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=3,
        fontsize="small",
        title="mixer / optimizer (mean over seeds)",
        title_fontsize="small",
    )
    fig.suptitle("Accuracy vs training throughput", fontsize="medium")
    return fig


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both throughput and accuracy, by throughput."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return sorted(front)


def plot(frame: pd.DataFrame, kind: str, output: Path | str | None = None) -> Figure:
    """Build the ``kind`` figure from ``frame``; write a PNG when ``output`` is given."""
    builders = {
        "scaling": plot_scaling,
        "memory": plot_memory,
        "curves": plot_curves,
        "pareto": plot_pareto,
    }
    if kind not in builders:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(PLOT_KINDS)}")
    require_matplotlib()
    figure = builders[kind](frame)
    if output is not None:
        path = Path(output)
        if path.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise UsageError(f"--output: {path} should end in .png (or .pdf, .svg)")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return figure
