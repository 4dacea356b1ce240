"""Plots: PNGs with labelled axes, units, log scales where data span decades, legends."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from test_results import write_bench_run, write_train_run
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.errors import UsageError
from mixbench.report.figure_data import pareto_front
from mixbench.report.leaderboard import BEST_MARK
from mixbench.report.plots import DPI, plot
from mixbench.report.results import load_results

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_frame(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("bench")
    write_bench_run(root / "run", mixers=["attention", "pooling"], tokens=[256, 1024, 4096])
    return load_results(root / "run")


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    accuracy = {
        ("attention", "adam"): [0.97, 0.99],
        ("attention", "sgd"): [0.90, 0.92],
        ("pooling", "adam"): [0.30, 0.34],
        ("identity", "adam"): [0.06, 0.07],
    }
    step_s = {"attention": 0.02, "pooling": 0.005, "identity": 0.002}
    return write_train_run(root / "run", accuracy, step_s=step_s)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def legend_texts(figure) -> list[str]:  # type: ignore[no-untyped-def]
    legends = [ax.get_legend() for ax in figure.axes if ax.get_legend()] + figure.legends
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_scaling_is_log_log_with_exponents(bench_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "scaling.png"
    figure = plot(bench_frame, "scaling", out)
    width, height = png_size(out)
    assert width >= 5 * DPI and height >= 3 * DPI  # print resolution, not a thumbnail
    (ax,) = figure.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "tokens" in ax.get_xlabel()
    assert ax.get_ylabel() == "latency per batch, median (ms)"
    exponents = {}
    for text in legend_texts(figure):
        match = re.match(r"(\w+) .*N\^\{(-?[\d.]+)\}", text)
        assert match, text
        exponents[match.group(1)] = float(match.group(2))
    assert exponents["attention"] == pytest.approx(2.0, abs=0.05)
    assert exponents["pooling"] == pytest.approx(1.0, abs=0.05)
    assert "Test CPU 9000" in ax.get_title()  # what it ran on


def test_memory_plot_in_mebibytes(bench_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    figure = plot(bench_frame, "memory", tmp_path / "memory.png")
    (ax,) = figure.axes
    assert ax.get_ylabel() == "peak memory above baseline (MiB)"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert figure.get_suptitle() == "Peak memory scaling"


def test_a_mixer_keeps_its_colour_across_figures_ranked_differently(
    bench_frame, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Legends list the mixers best first, and attention is slower but (here) lighter than
    pooling: the order flips between the latency and the memory figure, the colours must not."""
    from matplotlib.colors import to_hex

    frame = bench_frame.copy()
    pooling = frame["mixer"] == "pooling"
    frame.loc[pooling, "peak_mem_bytes"] = frame.loc[pooling, "peak_mem_bytes"] * 1000
    colours = {}
    for figure_name in ("scaling", "memory"):
        figure = plot(frame, figure_name, tmp_path / f"{figure_name}.png")
        (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend()] + figure.legends
        names = [t.get_text().split()[0] for t in legend.get_texts()]
        handles = [h[0] if isinstance(h, tuple) else h for h in legend.legend_handles]
        colours[figure_name] = {
            name: to_hex(handle.get_color()) for name, handle in zip(names, handles, strict=True)
        }
        colours[figure_name + " order"] = names
    assert colours["scaling order"] != colours["memory order"]  # the ranking did flip
    assert colours["scaling"] == colours["memory"]


def test_curves_by_step_and_by_time(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    figure = plot(load_results(train_dir), "curves", out)
    png_size(out)
    by_step, by_time = figure.axes
    assert by_step.get_xlabel() == "optimizer step"
    assert by_time.get_xlabel() == "wall time (s)"
    assert by_step.get_ylabel() == "validation accuracy (%)"
    labels = legend_texts(figure)
    assert "attention / adam (2 seeds)" in labels and len(labels) == 4
    final = max(line.get_ydata()[-1] for line in by_step.get_lines())
    assert final == pytest.approx(98.0)  # mean of the two seeds, in per cent


def test_pareto_front_and_axes(train_dir: Path, tmp_path: Path) -> None:
    figure = plot(load_results(train_dir), "pareto", tmp_path / "pareto.png")
    (ax,) = figure.axes
    assert ax.get_xlabel() == "training throughput (samples/s, higher is better)"
    assert ax.get_ylabel() == "final validation accuracy (%)"
    assert ax.get_xscale() == "log"  # 1,600 to 16,000 samples/s spans a decade
    assert "Pareto front" in legend_texts(figure)
    # attention/sgd is slower and less accurate than attention/adam: dominated.
    points = [(1.0, 98.0), (1.0, 91.0), (4.0, 32.0), (10.0, 6.5)]
    assert pareto_front(points) == [(1.0, 98.0), (4.0, 32.0), (10.0, 6.5)]


def test_cli_plot_writes_png(bench_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "figs" / "s.png"
    run_dir = bench_frame["run_dir"].iloc[0]
    result = runner.invoke(app, ["plot", run_dir, "--kind", "scaling", "--output", str(out)])
    assert result.exit_code == 0, result.output
    png_size(out)
    result = runner.invoke(app, ["plot", run_dir, "--kind", "violin"])
    assert result.exit_code == 2 and "scaling, memory, curves, pareto" in result.output
    result = runner.invoke(app, ["plot", run_dir, "--kind", "curves", "-o", str(out)])
    assert result.exit_code == 2 and "train results" in result.output


def test_without_matplotlib_says_how_to_install(
    bench_frame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'mixbench\[plot\]'"):
        plot(bench_frame, "scaling", tmp_path / "x.png")
    run_dir = bench_frame["run_dir"].iloc[0]
    result = runner.invoke(app, ["plot", run_dir, "--kind", "scaling"])
    assert result.exit_code == 2
    assert "pip install 'mixbench[plot]'" in result.output


def test_write_report_regenerates_every_artifact(train_dir: Path, tmp_path: Path) -> None:
    from mixbench.report.artifacts import write_report

    written = write_report([train_dir], tmp_path / "report", "train")
    names = sorted(p.name for p in written)
    assert names == ["curves.png", "leaderboard.csv", "leaderboard.json", "leaderboard.md",
                     "pareto.png"]  # fmt: skip
    assert BEST_MARK in (tmp_path / "report" / "leaderboard.md").read_text()


def overlapping_tick_labels(figure) -> list[str]:  # type: ignore[no-untyped-def]
    """Pairs of drawn tick labels (major or minor, on any axis) whose boxes intersect."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    found = []
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            boxes = []
            for minor in (False, True):
                locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
                labels = axis.get_ticklabels(minor=minor)
                for loc, label in zip(locs, labels, strict=False):
                    if label.get_visible() and label.get_text() and low <= loc <= high:
                        boxes.append((label.get_text(), label.get_window_extent(renderer)))
            for i, (text, box) in enumerate(boxes):
                for other, other_box in boxes[i + 1 :]:
                    if box.overlaps(other_box):
                        found.append(f"{axis.axis_name}: {text!r} overlaps {other!r}")
    return found


REPO_RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize(
    ("run", "kind"),
    [("bench", "scaling"), ("bench", "memory"), ("train", "curves"), ("train", "pareto")],
)
def test_no_tick_labels_overlap_on_the_committed_figures(run: str, kind: str) -> None:
    figure = plot(load_results(REPO_RESULTS / run), kind)
    assert overlapping_tick_labels(figure) == []


def test_the_overlap_check_catches_crowded_ticks() -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    ax = figure.subplots()
    ax.plot([300, 450], [1, 2])
    ax.set_xticks([300, 310, 320], labels=["3x10^2", "3.1x10^2", "3.2x10^2"])
    assert overlapping_tick_labels(figure)


def test_pareto_colour_is_the_mixer_and_marker_the_optimizer(train_dir: Path) -> None:
    figure = plot(load_results(train_dir), "pareto")
    (ax,) = figure.axes
    points = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    style = {(line.get_color(), line.get_marker()) for line in points}
    colours = {c for c, _ in style}
    markers = {m for _, m in style}
    assert len(points) == 4 and len(colours) == 3 and len(markers) == 2  # 3 mixers, 2 optimizers
    by_colour: dict[str, set[str]] = {}
    for colour, marker in style:
        by_colour.setdefault(colour, set()).add(marker)
    assert sorted(len(m) for m in by_colour.values()) == [1, 1, 2]  # attention: adam and sgd
    titles = [legend.get_title().get_text() for legend in figure.legends]
    assert titles == ["mixer (colour)", "optimizer (marker)"]
    assert legend_texts(figure) == ["attention", "identity", "pooling", "adam", "sgd",
                                    "Pareto front"]  # fmt: skip
