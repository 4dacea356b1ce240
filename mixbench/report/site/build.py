"""Assemble the report site from run directories, and the one-page HTML leaderboard."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.report.site import charts
from mixbench.report.site.page import (
    comparison_html,
    leaderboard_html,
    page,
    provenance_html,
)

if TYPE_CHECKING:  # pragma: no cover
    from mixbench.report.leaderboard import Leaderboard
    from mixbench.report.results import Results

INSTALL_HINT = "the HTML report needs plotly: pip install 'mixbench[report]'"
# The leaderboards shown for each kind of run, by metric.
BOARDS = {"bench": ("latency", "memory"), "train": ("final_val_acc",)}


def plotly_js() -> str:
    """The complete plotly.js bundle shipped inside the ``plotly`` Python package."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return str(get_plotlyjs())


def leaderboard_page(board: Leaderboard) -> str:
    """One leaderboard as a complete, self-contained HTML page (sortable, filterable)."""
    title = board.header_lines()[0]
    body = f"<h1>mixbench leaderboard</h1>\n{leaderboard_html(board, 'leaderboard')}"
    return page(title, body)


class _Sections:
    """Collects the page's sections, its table of contents and its chart specs."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figures: dict[str, Any] = {}

    def section(self, anchor: str, title: str) -> None:
        self.toc.append((anchor, title))
        self.parts.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>')

    def chart(self, chart_id: str, build: Any, *args: Any) -> None:
        """Add a chart, or say why it cannot be drawn from these rows."""
        try:
            self.figures[chart_id] = build(*args)
        except UsageError as exc:
            self.parts.append(f'<p class="meta">{html.escape(str(exc))}</p>')
            return
        self.parts.append(f'<div class="chart" id="{chart_id}"></div>')


def _results(paths: Sequence[Path], what: str) -> Results:
    from mixbench.report.results import read_results

    results = read_results(list(paths))
    if results.frame.empty:
        raise UsageError(f"{what}: no readable results under {', '.join(map(str, paths))}")
    return results


def build_site(
    run_dirs: Sequence[Path],
    output: Path,
    compare: tuple[Path, Path] | None = None,
    threshold: float = 0.05,
) -> Path:
    """Write ``output/index.html`` (and ``plotly.min.js``) for ``run_dirs``; return the page.

    With ``compare=(BASE, NEW)`` the page also judges NEW against BASE cell by cell
    (``mixbench compare``'s test), regressions marked; both runs are reported as well.
    """
    from mixbench.report.compare import compare_results
    from mixbench.report.leaderboard import build_leaderboard

    script = plotly_js()
    paths = list(dict.fromkeys([*run_dirs, *(compare or ())]))
    results = _results(paths, "report")
    frame = results.frame
    kinds = [k for k in ("bench", "train") if k in set(frame["kind"].dropna())]
    sections = _Sections()
    for kind in kinds:
        rows = frame[frame["kind"] == kind]
        sections.section(f"{kind}-leaderboards", f"{kind.capitalize()} leaderboards")
        for metric in BOARDS[kind]:
            try:
                board = build_leaderboard(rows, kind=kind, metric=metric)
            except UsageError as exc:  # e.g. rows without that metric
                sections.parts.append(f'<p class="meta">{html.escape(str(exc))}</p>')
                continue
            sections.parts.append(leaderboard_html(board, f"{kind}-{metric}"))
        sections.section(f"{kind}-charts", f"{kind.capitalize()} charts")
        if kind == "bench":
            sections.chart("chart-latency", charts.scaling_figure, rows, "latency_ms_median",
                           "Latency per batch against tokens")  # fmt: skip
            sections.chart("chart-memory", charts.scaling_figure, rows, "peak_mem_bytes",
                           "Peak memory against tokens")  # fmt: skip
        else:
            from mixbench.report.figure_data import pareto_panels

            sections.chart("chart-curves", charts.curves_figure, rows)
            try:
                panels = pareto_panels(rows)
            except UsageError as exc:
                sections.parts.append(f'<p class="meta">{html.escape(str(exc))}</p>')
                panels = []
            for number, panel in enumerate(panels):
                sections.chart(f"chart-pareto-{number}", charts.pareto_figure, panel)
    if compare is not None:
        base, new = compare
        comparison = compare_results(
            _results([base], "--compare BASE").frame,
            _results([new], "--compare NEW").frame,
            metric=None,
            threshold=threshold,
        )
        sections.section("comparison", "Comparison")
        sections.parts.append(comparison_html(comparison, str(base), str(new)))
    sections.section("provenance", "Provenance")
    sections.parts.extend(provenance_html(run) for run in results.runs)
    for problem in results.problems:
        sections.parts.append(f'<p class="meta">skipped {html.escape(str(problem))}</p>')
    nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in sections.toc)
    runs = ", ".join(html.escape(run.run_id) for run in results.runs)
    heading = ["<h1>mixbench report</h1>", f'<p class="meta">runs: {runs}</p>']
    body = "\n".join([*heading, f"<nav>{nav}</nav>", *sections.parts])
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / "plotly.min.js").write_text(script, encoding="utf-8")
        written = output / "index.html"
        written.write_text(page("mixbench report", body, sections.figures), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output {output}: cannot write ({exc.strerror or exc})") from None
    return written
