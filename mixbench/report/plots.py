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

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.report.figure_data import curve_series, pareto_panels, scaling_series
from mixbench.report.results import METRICS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.axis import XAxis, YAxis
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

PLOT_KINDS = ("scaling", "memory", "curves", "pareto")
DPI = 200
INSTALL_HINT = "plotting needs matplotlib: pip install 'mixbench[plot]'"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", ":", "-.")


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


def _style(index: int) -> dict[str, Any]:
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
    from mixbench.report.leaderboard import describe_environment, shared_context, shared_environment

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


def _plain_formatter() -> Formatter:
    """Tick labels as plain numbers (1,000 and 0.5, never 10^3 or 5x10^-1)."""
    from matplotlib.ticker import FuncFormatter

    from mixbench.report.leaderboard import format_number

    def label(value: float, _: Any) -> str:
        text = format_number(value)
        return text.rstrip("0").rstrip(".") if "." in text else text

    return FuncFormatter(label)


def _log_axis(axis: XAxis | YAxis, values: Sequence[float]) -> None:
    """Log scale with sparse, plainly labelled ticks: 1-2-5 per decade over up to two
    decades, one per decade beyond, and unlabelled minor ticks, so labels never collide."""
    from matplotlib.ticker import LogLocator, NullFormatter

    positive = [v for v in values if v > 0 and math.isfinite(v)]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    if axis.axis_name == "x":
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    if decades < 0.5:
        subs: tuple[float, ...] = tuple(float(s) for s in range(1, 10))
    else:
        subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(_plain_formatter())
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10)), numticks=12))
    axis.set_minor_formatter(NullFormatter())


def plot_scaling(
    frame: pd.DataFrame, metric: str = "latency_ms_median", title: str | None = None
) -> Figure:
    """One line per mixer of ``metric`` against token count, log-log, exponent in legend."""
    from mixbench.report.leaderboard import describe_environment

    board, series = scaling_series(frame, metric)
    fig, (ax,) = _new_figure()
    title = title or (
        "Latency scaling" if metric == "latency_ms_median" else f"Scaling of {board.metric.label}"
    )
    all_y: list[float] = []
    colours = sorted(line.label for line in series)  # one colour per mixer in every figure
    for line in series:
        all_y.extend(line.values)
        label = line.label
        if line.exponent is not None:
            label += rf"  ($\propto N^{{{line.exponent:.2f}}}$)"
        bars = (
            [
                [y - lo for y, lo in zip(line.values, line.low, strict=True)],
                [hi - y for y, hi in zip(line.values, line.high, strict=True)],
            ]
            if line.has_ci
            else None
        )
        ax.errorbar(line.tokens, line.values, yerr=bars, label=label, capsize=2, linewidth=1.5,
                    **_style(colours.index(line.label)))  # fmt: skip
    _token_axis(ax, board.columns)
    if _spans_decades(all_y) or len(board.columns) > 2:
        _log_axis(ax.yaxis, all_y)
    ax.set_ylabel(board.metric.title())
    ax.grid(True, which="both", alpha=0.3)
    legend_title = "mixer (fitted exponent, largest 3 N)"
    if any(line.has_ci for line in series):
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


def plot_curves(frame: pd.DataFrame) -> Figure:
    """Validation accuracy against step and against wall time, per mixer and optimizer."""
    series = curve_series(frame)
    train = frame[frame["kind"] == "train"] if "kind" in frame.columns else frame
    fig, (by_step, by_time) = _new_figure(panels=2)
    shaded = False
    mixers = sorted({line.keys[0] for line in series})
    others = sorted({line.keys[1:] for line in series})
    for line in series:
        label = line.label + (f" ({line.seeds} seeds)" if line.seeds > 1 else "")
        # Colour says the mixer; marker and dash say the optimizer (and task).
        other = others.index(line.keys[1:])
        style: dict[str, Any] = {
            "color": f"C{mixers.index(line.keys[0]) % 10}",
            "marker": MARKERS[other % len(MARKERS)],
            "linestyle": LINESTYLES[other % len(LINESTYLES)],
            "markersize": 3,
        }
        by_step.plot(line.steps, line.accuracy, label=label, **style)
        by_time.plot(line.time_s, line.accuracy, label=label, **style)
        if line.seeds > 1:
            by_step.fill_between(line.steps, line.low, line.high, color=style["color"], alpha=0.15)
            by_time.fill_between(line.time_s, line.low, line.high, color=style["color"], alpha=0.15)
            shaded = True
    by_step.set_xlabel("optimizer step")
    by_time.set_xlabel("wall time (s)")
    times = [t for line in series for t in line.time_s if t > 0]
    if _spans_decades(times) and min(times) > 0:
        _log_axis(by_time.xaxis, times)
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


def plot_pareto(frame: pd.DataFrame, metric: str = "final_val_acc") -> Figure:
    """Accuracy against training throughput, one point per mixer/optimizer, front drawn.

    Colour says the mixer and the marker says the optimizer, each with its own legend, so
    18 pairs read as 6 colours and 3 shapes rather than 18 look-alike symbols.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = pareto_panels(frame, metric)
    mixers = sorted({str(m) for p in panels for m in p.points["mixer"]})
    optimizers = sorted({str(o) for p in panels for o in p.points["optimizer"]})
    colour = {m: f"C{i % 10}" for i, m in enumerate(mixers)}
    marker = {o: MARKERS[i % len(MARKERS)] for i, o in enumerate(optimizers)}
    fig, axes = _new_figure(panels=len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        for point in panel.points.to_dict("records"):
            ax.plot(point["throughput"], point["accuracy"], linestyle="none", markersize=7,
                    color=colour[str(point["mixer"])], marker=marker[str(point["optimizer"])],
                    markeredgecolor="white", markeredgewidth=0.5)  # fmt: skip
        ax.step([x for x, _ in panel.front], [y for _, y in panel.front], where="pre",
                color="0.4", linestyle="--", linewidth=1)  # fmt: skip
        throughputs = panel.points["throughput"].tolist()
        if _spans_decades(throughputs):
            _log_axis(ax.xaxis, throughputs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.xaxis.set_major_formatter(_plain_formatter())
        ax.set_xlabel(f"training throughput ({panel.unit}, higher is better)")
        ax.set_ylabel(f"{METRICS[metric].label if metric in METRICS else metric} (%)")
        subtitle = _context_text(panel.rows, "train")
        where = f"on {panel.task}, " if panel.task else ""
        title = "\n".join(filter(None, [where + "mean over seeds", subtitle]))
        ax.set_title(title, fontsize="x-small", color="0.3")
        ax.grid(True, which="both", alpha=0.3)
    mixer_handles = [
        Line2D([], [], linestyle="none", marker="o", markersize=7, color=colour[m], label=m)
        for m in mixers
    ]
    optimizer_handles = [
        Line2D([], [], linestyle="none", marker=marker[o], markersize=7, color="0.3", label=o)
        for o in optimizers
    ]
    front_handle = Line2D([], [], color="0.4", linestyle="--", linewidth=1, label="Pareto front")
    fig.legend(handles=mixer_handles, loc="outside right upper", title="mixer (colour)",
               fontsize="small", title_fontsize="small")  # fmt: skip
    fig.legend(handles=[*optimizer_handles, front_handle], loc="outside right lower",
               title="optimizer (marker)", fontsize="small", title_fontsize="small")  # fmt: skip
    fig.suptitle("Accuracy vs training throughput", fontsize="medium")
    return fig


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
