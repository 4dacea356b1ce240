"""Plotly figure specs (plain JSON-able dicts) for the report's charts.

Each builder returns ``{"data": [...], "layout": {...}}`` for ``Plotly.newPlot``; the series
come from ``mixbench.report.figure_data``, so the charts show what the PNG figures show.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mixbench.report.figure_data import ParetoPanel, curve_series, scaling_series

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

Figure = dict[str, Any]

# plotly's default qualitative palette, and marker shapes for the second categorical axis.
COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52")  # fmt: skip
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down")
FONT = {"family": "system-ui, sans-serif", "size": 12}


def _layout(title: str, x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"showgrid": True, **x},
        "yaxis": {"showgrid": True, **y},
        "font": FONT,
        "hovermode": "closest",
        "legend": {"font": {"size": 11}},
        "margin": {"t": 60, "r": 20},
    }


def _log_axis(values: list[float]) -> dict[str, Any]:
    """A log axis with plain-number ticks at 1-2-5 per decade (one per decade beyond two
    decades): plotly's own minor labels are bare digits, where 0.5 reads as "5"."""
    axis: dict[str, Any] = {"type": "log", "exponentformat": "none"}
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return axis
    low, high = min(positive), max(positive)
    steps = (1, 2, 5) if math.log10(high / low) <= 2 else (1,)
    ticks = [
        step * 10.0**power
        for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for step in steps
    ]
    inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    if len(inside) >= 2:
        axis["tickvals"] = inside
        axis["ticktext"] = [f"{t:,.10g}" for t in inside]
    return axis


def _finite(values: list[float]) -> list[float | None]:
    """JSON has no NaN: missing points become null (a gap in the line)."""
    return [v if math.isfinite(v) else None for v in values]


def scaling_figure(frame: pd.DataFrame, metric: str, title: str) -> Figure:
    """``metric`` against tokens on log-log axes, 95 % CI bars, fitted exponent per mixer."""
    board, series = scaling_series(frame, metric)
    data = []
    for index, line in enumerate(series):
        name = line.label
        if line.exponent is not None:
            name += f" (N^{line.exponent:.2f})"
        trace: dict[str, Any] = {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": line.tokens,
            "y": line.values,
            "marker": {"color": COLOURS[index % len(COLOURS)], "size": 7},
            "hovertemplate": f"{line.label}<br>N=%{{x}}<br>%{{y:.4g}} {board.metric.shown_unit}"
            "<extra></extra>",
        }
        if line.has_ci:
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": [hi - y for y, hi in zip(line.values, line.high, strict=True)],
                "arrayminus": [y - lo for y, lo in zip(line.values, line.low, strict=True)],
                "thickness": 1,
                "width": 3,
            }
        data.append(trace)
    tokens = [float(t) for t in board.columns]
    x_axis = {
        "type": "log",
        "title": {"text": "tokens N"},
        "tickvals": tokens,
        "ticktext": [f"{int(t):,}" for t in tokens],
    }
    values = [v for line in series for v in line.values]
    y_axis = _log_axis(values) | {"title": {"text": board.metric.title()}}
    layout = _layout(title + " (legend: fitted exponent over the largest 3 N)", x_axis, y_axis)
    return {"data": data, "layout": layout}


def curves_figure(frame: pd.DataFrame) -> Figure:
    """Validation accuracy against optimizer step, per mixer/optimizer, band over seeds."""
    data: list[dict[str, Any]] = []
    for index, line in enumerate(curve_series(frame)):
        colour = COLOURS[index % len(COLOURS)]
        label = line.label + (f" ({line.seeds} seeds)" if line.seeds > 1 else "")
        if line.seeds > 1:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": line.steps + line.steps[::-1],
                    "y": line.high + line.low[::-1],
                    "fill": "toself",
                    "line": {"width": 0, "color": colour},
                    "opacity": 0.2,
                    "legendgroup": label,
                    "showlegend": False,
                    "hoverinfo": "skip",
                }
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "legendgroup": label,
                "x": line.steps,
                "y": line.accuracy,
                "customdata": _finite(line.time_s),
                "marker": {"color": colour, "size": 4},
                "line": {"color": colour, "width": 1.5},
                "hovertemplate": f"{label}<br>step %{{x}} (%{{customdata:.1f}} s)"
                "<br>%{y:.1f} %<extra></extra>",
            }
        )
    layout = _layout(
        "Training curves: validation accuracy",
        {"title": {"text": "optimizer step"}},
        {"title": {"text": "validation accuracy (%)"}},
    )
    return {"data": data, "layout": layout}


def pareto_figure(panel: ParetoPanel) -> Figure:
    """Accuracy against training throughput: colour = mixer, marker = optimizer, front."""
    points = panel.points
    mixers = sorted({str(m) for m in points["mixer"]})
    optimizers = sorted({str(o) for o in points["optimizer"]})
    data: list[dict[str, Any]] = []
    for record in points.to_dict("records"):
        mixer, optimizer = str(record["mixer"]), str(record["optimizer"])
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{mixer} / {optimizer}",
                "x": [record["throughput"]],
                "y": [record["accuracy"]],
                "marker": {
                    "color": COLOURS[mixers.index(mixer) % len(COLOURS)],
                    "symbol": SYMBOLS[optimizers.index(optimizer) % len(SYMBOLS)],
                    "size": 11,
                    "line": {"color": "white", "width": 1},
                },
                "hovertemplate": f"{mixer} / {optimizer}<br>%{{x:,.0f}} {panel.unit}"
                "<br>%{y:.1f} %<extra></extra>",
            }
        )
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "Pareto front",
            "x": [x for x, _ in panel.front],
            "y": [y for _, y in panel.front],
            "line": {"shape": "vh", "dash": "dash", "color": "#666", "width": 1},
            "hoverinfo": "skip",
        }
    )
    throughputs = points["throughput"].tolist()
    spans = min(throughputs) > 0 and max(throughputs) / min(throughputs) >= 10
    x_axis: dict[str, Any] = _log_axis(throughputs) if spans else {"exponentformat": "none"}
    x_axis["title"] = {"text": f"training throughput ({panel.unit}, higher is better)"}
    title = "Accuracy vs training throughput" + (f" on {panel.task}" if panel.task else "")
    layout = _layout(
        title + " (colour: mixer, marker: optimizer)",
        x_axis,
        {"title": {"text": "final validation accuracy (%)"}},
    )
    return {"data": data, "layout": layout}
