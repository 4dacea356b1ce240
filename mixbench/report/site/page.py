"""HTML pieces of the report: the page shell, sortable tables, provenance and comparison.

Tables carry each cell's sort key in ``data-value`` (the number behind a formatted value),
so a click on a header sorts numerically in the metric's units rather than by text.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mixbench.report.leaderboard import BEST_MARK, describe_environment, format_number

if TYPE_CHECKING:  # pragma: no cover
    from mixbench.report.compare import Comparison
    from mixbench.report.leaderboard import Leaderboard
    from mixbench.report.results import RunInfo

REGRESSION_MARK = "▲"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 1.5rem 3rem; color: #222; }
h1 { margin-top: 1.5rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; background: #f6f6f6; }
table.sortable th[aria-sort=ascending]::after { content: " ▲"; }
table.sortable th[aria-sort=descending]::after { content: " ▼"; }
input.filter { margin: .3rem 0; padding: .25rem .4rem; width: 20rem; }
.meta { color: #555; font-size: 90%; }
.chart { width: 100%; height: 460px; margin-bottom: 1.5rem; }
tr.regressed td { background: #fde8e8; } tr.improved td { background: #e8f6ea; }
.verdict-regressed, .verdict-broke { color: #b00020; font-weight: bold; }
.verdict-improved { color: #1b7f3a; }
code { background: #f3f3f3; padding: 0 .2rem; word-break: break-all; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; }
"""

SCRIPT = """
function sortKey(row, column) {
  const value = row.cells[column].dataset.value;
  if (value === undefined || value === "") return null;
  const number = Number(value);
  return Number.isNaN(number) ? value : number;
}
function sortTable(table, column, header) {
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a, column), y = sortKey(b, column);
    if (x === null || y === null) return (x === null) - (y === null);
    const order = typeof x === "number" && typeof y === "number"
      ? x - y : String(x).localeCompare(String(y));
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((header, column) => {
    header.addEventListener("click", () => sortTable(table, column, header));
  });
});
document.querySelectorAll("input.filter").forEach((input) => {
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    const table = document.getElementById(input.dataset.table);
    Array.from(table.tBodies[0].rows).forEach((row) => {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every((word) => text.includes(word));
    });
  });
});
const figures = document.getElementById("figures");
if (figures) {
  for (const [id, figure] of Object.entries(JSON.parse(figures.textContent))) {
    Plotly.newPlot(id, figure.data, figure.layout, {responsive: true, displaylogo: false});
  }
}
"""

esc = html.escape


def page(title: str, body: str, figures: Mapping[str, Any] | None = None) -> str:
    """A complete HTML document; with ``figures``, plotly.min.js (beside it) draws them."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{STYLE}</style>",
    ]
    if figures:
        head.append('<script src="plotly.min.js"></script>')
    tail = []
    if figures:
        spec = json.dumps(figures, allow_nan=False, default=str).replace("</", "<\\/")
        tail.append(f'<script type="application/json" id="figures">{spec}</script>')
    tail.append(f"<script>{SCRIPT}</script>")
    return "\n".join([*head, "</head>", "<body>", body, *tail, "</body>", "</html>"]) + "\n"


def cell(text: str, value: Any = None, numeric: bool = False, raw: bool = False) -> str:
    """A ``<td>`` whose sort key is ``value`` (the text itself when no value is given)."""
    key = text if value is None else value
    if isinstance(key, float) and not math.isfinite(key):
        key = ""
    css = ' class="num"' if numeric else ""
    shown = text if raw else esc(text)
    return f'<td{css} data-value="{esc(str(key))}">{shown}</td>'


def sortable_table(
    table_id: str, headers: Sequence[str], rows: Iterable[str], numeric: Sequence[bool]
) -> str:
    """A filter box and a table whose headers sort it; ``rows`` are ``<tr>`` strings."""
    head = "".join(
        f'<th{" class=num" if num else ""} scope="col">{esc(h)}</th>'
        for h, num in zip(headers, numeric, strict=True)
    )
    return (
        f'<input class="filter" type="search" data-table="{esc(table_id)}" '
        f'placeholder="filter rows (all words must match)" aria-label="filter rows">\n'
        f'<table class="sortable" id="{esc(table_id)}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )


def leaderboard_html(board: Leaderboard, table_id: str) -> str:
    """A leaderboard as a titled, sortable, filterable table with its header and notes."""
    lines = board.header_lines()
    out = [f"<h3>{esc(lines[0])}</h3>"]
    out += [f'<p class="meta">{esc(line)}</p>' for line in lines[1:]]
    headers = [*board.row_fields, *(board.column_title(c) for c in board.columns)]
    multi = len(board.columns) > 1
    if multi:
        headers.append("mean rank")
    scale = board.metric.display_scale
    rows = []
    for row in board.row_order:
        cells = [cell(str(v)) for v in row]
        for column in board.columns:
            found = board.cell(row, column)
            text = esc(board.format_value(found))
            if found is not None and found["best"]:
                text = f"<strong>{text}</strong> {BEST_MARK}"
            marks = "" if found is None else board._marks(found)
            ok = found is not None and found["status"] == "ok"
            value = found["value"] * scale if ok and found is not None else ""
            cells.append(cell(text + marks, value, numeric=True, raw=True))
        if multi:
            rank = board._mean_rank(row)
            cells.append(cell(f"{rank:.1f}", rank, numeric=True))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    numeric = [False] * len(board.row_fields) + [True] * (len(headers) - len(board.row_fields))
    out.append(sortable_table(table_id, headers, rows, numeric))
    out += [f'<p class="meta">{esc(line)}</p>' for line in board.footnotes()]
    return "\n".join(out)


def _command(manifest: Mapping[str, Any]) -> str:
    command = manifest.get("command")
    if isinstance(command, list):
        return " ".join(str(part) for part in command)
    return str(command or "")


def provenance_html(run: RunInfo) -> str:
    """What a run measured, where, with which versions and which command."""
    manifest = run.manifest or {}
    env = manifest.get("environment") or {}
    probe = manifest.get("probe") or {}
    facts: list[tuple[str, str]] = [
        ("kind", str(manifest.get("kind", ""))),
        ("status", str(manifest.get("status", ""))),
        ("directory", str(run.path)),
        ("command", _command(manifest)),
        ("started / ended", f"{manifest.get('started_at', '?')} / {manifest.get('ended_at', '?')}"),
        ("cells", ", ".join(f"{n} {s}" for s, n in (manifest.get("counts") or {}).items())),
        ("machine", describe_environment(run.facts)),
        ("platform", str(env.get("platform", ""))),
        ("cores / torch threads", f"{env.get('cores', '?')} / {env.get('torch_threads', '?')}"),
    ]
    if env.get("load_average_1min") is not None:
        facts.append(("load average at start", f"{env['load_average_1min']:.2f}"))
    if probe.get("matmul_gflops"):
        facts.append(("probed matmul peak", f"{format_number(probe['matmul_gflops'])} GFLOP/s"))
    if probe.get("bandwidth_gbs"):
        facts.append(("probed copy bandwidth", f"{format_number(probe['bandwidth_gbs'])} GB/s"))
    plugins = env.get("plugins") or {}
    if plugins:
        facts.append(
            (
                "plugins",
                ", ".join(f"{name} {info.get('version', '')}" for name, info in plugins.items()),
            )
        )
    items = "".join(
        f"<dt>{esc(k)}</dt><dd>{'<code>' + esc(v) + '</code>' if k == 'command' else esc(v)}</dd>"
        for k, v in facts
        if v
    )
    return f'<h3 id="run-{esc(run.run_id)}">{esc(run.run_id)}</h3>\n<dl class="facts">{items}</dl>'


def comparison_html(comparison: Comparison, base: str, new: str) -> str:
    """Every paired cell with its ratio, p-value and verdict; regressions marked."""
    from mixbench.report.compare import format_interval

    metric = comparison.metric
    scale = metric.display_scale
    out = [
        f"<p>{esc(new)} against {esc(base)}: {esc(metric.title())}, {esc(metric.direction)}; "
        f"a change counts when its confidence interval (alpha {comparison.alpha}) lies "
        f"beyond {comparison.threshold:.1%}.</p>"
    ]
    if comparison.drift is not None:
        out.append(f'<p class="meta">machine drift new/base (reference workload): '
                   f"{comparison.drift:.3f}, corrected process by process</p>")  # fmt: skip
    if comparison.uncorrected:
        out.append(f'<p class="meta">{esc(comparison.uncorrected)}</p>')
    for name, (old, now) in {**comparison.paired_across, **comparison.environment}.items():
        out.append(f'<p class="meta">runs differ in {esc(name)}: {esc(str(old))} → '
                   f"{esc(str(now))}</p>")  # fmt: skip
    rows = []
    for pair in comparison.pairs:
        label = " ".join(f"{k}={v}" for k, v in pair.label.items())
        sides = []
        for measured in (pair.base, pair.new):
            ok = measured.status == "ok"
            text = format_number(measured.value * scale) if ok else measured.status
            sides.append(cell(text, measured.value * scale if ok else "", numeric=True))
        mark = f"{REGRESSION_MARK} " if pair.regressed else ""
        verdict = f'<span class="verdict-{esc(pair.verdict)}">{mark}{esc(pair.verdict)}</span>'
        css = "regressed" if pair.regressed else pair.verdict.replace(" ", "-")
        judged = "" if pair.interval is None else format_interval(pair.interval)
        rows.append(
            f'<tr class="{esc(css)}">'
            + cell(label)
            + "".join(sides)
            + cell("" if math.isnan(pair.ratio) else f"{pair.ratio:.3f}", pair.ratio, True)
            + cell(judged, pair.interval.estimate if pair.interval else "", True)
            + cell("" if pair.p is None else f"{pair.p:.2g}", pair.p, True)
            + cell(verdict, pair.verdict, raw=True)
            + "</tr>"
        )
    headers = ["cell", "base", "new", "new/base", "judged [CI]", "p", "verdict"]
    numeric = [False, True, True, True, True, True, False]
    out.append(sortable_table("comparison-cells", headers, rows, numeric))
    for side, cells in (("base", comparison.only_base), ("new", comparison.only_new)):
        for only in cells:
            text = " ".join(f"{k}={v}" for k, v in only.items())
            out.append(f'<p class="meta">only in {side}: {esc(text)}</p>')
    counts = ", ".join(f"{n} {v}" for v, n in sorted(comparison.counts().items()))
    regressions = len(comparison.regressions)
    outcome = f"{regressions} regression(s)" if regressions else "no regression"
    css = ' class="verdict-regressed"' if regressions else ""
    out.append(f"<p{css}>{len(comparison.pairs)} paired cell(s): {esc(counts or 'none')}; "
               f"{outcome}</p>")  # fmt: skip
    return "\n".join(out)
