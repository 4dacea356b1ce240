"""Leaderboards: many runs' rows turned into one ranked, pivoted table.

The recipe is the one a paper table follows:

1. **Aggregate** the rows of one cell (same mixer, same token count, ...): benchmark repeats
   by their median (timings are skewed; the median is what the runner reports too), training
   seeds by mean ± standard deviation (the convention for accuracies).
2. **Pivot**: mixers (and whatever else varies) as rows, token counts or tasks as columns.
3. **Rank** each column in the metric's own direction (latency and memory: lower is better;
   throughput and accuracy: higher) and mark the best; sort rows by their mean rank.
4. **Say what was measured**: settings shared by every row go in a header line; settings
   that differ become row labels; runs on different hardware or versions are labelled apart,
   never averaged into one number. Timings whose samples were noisy (IQR/median > 10 %)
   carry a dagger; the samples are process-level (one median per worker process, as
   ``mixbench compare`` tests them) for rows measured with ``--processes R`` > 1 and for
   several rows of one cell, per-iteration for a lone one-process row.

Markdown (GitHub-flavoured), HTML, CSV and JSON are rendered from the same cells; CSV and
JSON keep full precision and the metric's unit in the column name.
"""

from __future__ import annotations

import functools
import html
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mixbench.errors import UsageError
from mixbench.report.results import ENVIRONMENT_FACTS, Metric, resolve_metric
from mixbench.runs.rows import plain

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

BEST_MARK = "★"
NOISY_MARK = "†"
PARTIAL_MARK = "‡"
NOISY_REL_SPREAD = 0.10

# What each kind of run is pivoted by, and the settings worth naming in the header.
BASE_ROWS = {"bench": ("mixer",), "train": ("mixer", "optimizer")}
COLUMN_FIELD = {"bench": "tokens", "train": "task"}
CONTEXT_FIELDS = {
    "bench": ("level", "mode", "optimizer", "preset", "dim", "batch_size", "dtype", "device",
              "threads", "compile"),
    "train": ("preset", "steps", "lr", "lr_tuning", "batch_size", "dtype", "device", "threads"),
}  # fmt: skip
# Fields that are aggregated over, not told apart, and fields that only describe the run.
REPLICATE_FIELDS = frozenset({"repeat", "seed"})
BOOKKEEPING_FIELDS = frozenset({"out", "json", "quiet", "timeout", "run_id", "repeats"})


@dataclass
class Leaderboard:
    """One metric, pivoted and ranked; render with ``to_markdown`` and friends.

    ``cells`` is long-form: one row per (row labels, column value) with the aggregated
    ``value``, its ``spread`` (IQR of repeats for bench, standard deviation of seeds for
    train), ``low``/``high`` (the stored 95 % CI of a median latency), ``n`` results that
    went into it, ``failed`` results that did not, ``status``, ``noisy``, ``rank`` within
    its column and ``best``.
    """

    kind: str
    metric: Metric
    row_fields: list[str]
    column_field: str | None
    columns: list[Any]
    cells: pd.DataFrame
    row_order: list[tuple[Any, ...]]
    context: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    # -- pivoted views --------------------------------------------------------------------

    def pivot(self, what: str = "value") -> pd.DataFrame:
        """``what`` (value, spread, rank, ...) with row labels as index, columns as columns."""
        import pandas as pd

        if self.cells.empty:
            return pd.DataFrame()
        column = self.column_field or "_all"
        table = self.cells.pivot_table(
            index=self.row_fields, columns=column, values=what, aggfunc="first", dropna=False
        )
        table = table.reindex(columns=[c for c in self.columns if c in table.columns])
        order = [r if len(self.row_fields) > 1 else r[0] for r in self.row_order]
        return table.reindex(order)

    def column_title(self, value: Any) -> str:
        if self.column_field is None:
            return self.metric.name
        if isinstance(value, str):
            return value
        return f"{self.column_field}={value}"

    def cell(self, row: tuple[Any, ...], column: Any) -> dict[str, Any] | None:
        """The aggregated cell at (row labels, column value), as a dict; None if absent."""
        return self._index.get((*row, column))

    @functools.cached_property
    def _index(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        column = self.column_field or "_all"
        return {
            (*(rec[f] for f in self.row_fields), rec[column]): rec
            for rec in self.cells.to_dict("records")
        }

    # -- renderers ----------------------------------------------------------------------

    def format_value(self, cell: dict[str, Any] | None) -> str:
        """A cell as text: the value in display units, ± spread for seeds, or the status."""
        if cell is None:
            return ""
        if cell["status"] != "ok":
            return str(cell["status"])
        scale = self.metric.display_scale
        percent = self.metric.display_unit == "%"
        text = f"{cell['value'] * scale:.1f}" if percent else format_number(cell["value"] * scale)
        if self.kind == "train" and cell["n"] > 1 and not _missing(cell["spread"]):
            decimals = len(text.rpartition(".")[2]) if "." in text else 0
            text += f" ± {cell['spread'] * scale:.{decimals}f}"
        if not _missing(cell.get("tuned_lr")):
            text += f" @ lr {cell['tuned_lr']:g}"  # the rate tuning chose for this cell
        return text

    def _marks(self, cell: dict[str, Any] | None) -> str:
        if cell is None or cell["status"] != "ok":
            return ""
        return (NOISY_MARK if cell["noisy"] else "") + (PARTIAL_MARK if cell["failed"] else "")

    def header_lines(self) -> list[str]:
        lines = [f"{self.metric.title()} · {self.metric.arrow} {self.metric.direction}"]
        if self.context:
            lines.append(" · ".join(f"{k}={v}" for k, v in self.context.items()))
        env = describe_environment(self.environment)
        if env:
            lines.append(f"measured on {env}")
        return lines

    def footnotes(self) -> list[str]:
        marks = [f"{BEST_MARK} best in column"]
        if self.metric.timing and self.kind == "bench":
            marks.append(f"{NOISY_MARK} noisy (IQR/median > {NOISY_REL_SPREAD:.0%})")
        if self.kind == "train":
            marks.append("mean ± std over seeds")
        elif not self.cells.empty and int(self.cells["n"].max()) > 1:
            marks.append("median over repeats")
        if not self.cells.empty and bool((self.cells["failed"] > 0).any()):
            marks.append(f"{PARTIAL_MARK} some repeats or seeds failed")
        lines = [" · ".join(marks), flops_note(self.metric, self.environment)]
        lines.extend(self.notes)
        if self.runs:
            lines.append("runs: " + ", ".join(self.runs))
        return lines

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: best per column in bold with a star."""
        head = [*self.row_fields, *(self.column_title(c) for c in self.columns)]
        multi = len(self.columns) > 1
        if multi:
            head.append("mean rank")
        align = ["---"] * len(self.row_fields) + ["--:"] * (len(head) - len(self.row_fields))
        lines = [f"**{_md(self.header_lines()[0])}**", ""]
        lines += [_md(line) + "  " for line in self.header_lines()[1:]]
        lines += ["", "| " + " | ".join(_md(h) for h in head) + " |", "|" + "|".join(align) + "|"]
        for row in self.row_order:
            parts = [_md(str(v)) for v in row]
            for column in self.columns:
                cell = self.cell(row, column)
                text = _md(self.format_value(cell))
                if cell is not None and cell["best"]:
                    text = f"**{text}** {BEST_MARK}"
                parts.append(text + self._marks(cell))
            if multi:
                parts.append(f"{self._mean_rank(row):.1f}")
            lines.append("| " + " | ".join(parts) + " |")
        lines.append("")
        lines += [_md(line) + "  " for line in self.footnotes()]
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        """A standalone HTML table (best in <strong>), for pasting into a page."""
        esc = html.escape
        out = [f"<p><strong>{esc(self.header_lines()[0])}</strong><br>"]
        out += [f"{esc(line)}<br>" for line in self.header_lines()[1:]]
        out.append("</p>\n<table>\n<thead><tr>")
        out += [f"<th>{esc(f)}</th>" for f in self.row_fields]
        out += [
            f'<th style="text-align:right">{esc(self.column_title(c))}</th>' for c in self.columns
        ]
        out.append("</tr></thead>\n<tbody>")
        for row in self.row_order:
            out.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row))
            for column in self.columns:
                cell = self.cell(row, column)
                text = esc(self.format_value(cell))
                if cell is not None and cell["best"]:
                    text = f"<strong>{text}</strong> {BEST_MARK}"
                out.append(f'<td style="text-align:right">{text}{self._marks(cell)}</td>')
            out.append("</tr>")
        out.append("</tbody>\n</table>")
        out += [f"<p><small>{esc(line)}</small></p>" for line in self.footnotes()]
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        """Pivoted CSV at full precision; columns are ``<metric with unit>[<axis>=<value>]``."""
        import pandas as pd

        values = self.pivot("value")
        frame = pd.DataFrame(index=values.index)
        for column in self.columns:
            suffix = f"[{self.column_field}={column}]" if self.column_field else ""
            frame[f"{self.metric.name}{suffix}"] = values[column]
            spread = "std" if self.kind == "train" else "iqr"
            frame[f"{self.metric.name}_{spread}{suffix}"] = self.pivot("spread")[column]
            frame[f"status{suffix}"] = self.pivot("status")[column]
            if self.metric.timing:
                frame[f"noisy{suffix}"] = self.pivot("noisy")[column]
        frame["mean_rank"] = [self._mean_rank(r) for r in self.row_order]
        return str(frame.reset_index().to_csv(index=False))

    def to_json(self) -> str:
        """Everything: metric, layout, context, environment, notes and each cell."""
        cells = [
            {k: plain(v) for k, v in rec.items() if k != "_all"}
            for rec in self.cells.to_dict("records")
        ]
        payload = {
            "kind": self.kind,
            "metric": {
                "name": self.metric.name,
                "label": self.metric.label,
                "unit": self.metric.unit,
                "higher_is_better": self.metric.higher_is_better,
            },
            "row_fields": self.row_fields,
            "column_field": self.column_field,
            "columns": [plain(c) for c in self.columns],
            "rows": [[plain(v) for v in r] for r in self.row_order],
            "context": {k: plain(v) for k, v in self.context.items()},
            "environment": {k: plain(v) for k, v in self.environment.items()},
            "notes": self.notes,
            "runs": self.runs,
            "cells": cells,
        }
        return json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n"

    def render(self, fmt: str) -> str:
        renderers = {
            "md": self.to_markdown,
            "csv": self.to_csv,
            "json": self.to_json,
            "html": self.to_html,
        }
        if fmt not in renderers:
            raise UsageError(f"--format: {fmt!r} is not one of {', '.join(renderers)}")
        return renderers[fmt]()

    def _mean_rank(self, row: tuple[Any, ...]) -> float:
        ranks = [
            c["rank"]
            for col in self.columns
            if (c := self.cell(row, col)) is not None and not _missing(c["rank"])
        ]
        return sum(ranks) / len(ranks) if ranks else math.nan


def flops_note(metric: Metric, environment: dict[str, Any]) -> str:
    """The legend line saying which FLOPs a table shows, and where the conventions are."""
    shown = f"{metric.flops} FLOPs" if metric.flops else "none"
    version = environment.get("conventions_version")
    which = "" if version is None or _missing(version) else f", version {int(version)}"
    return f"FLOPs shown: {shown} · conventions (FLOPs, memory): docs/conventions.md{which}"


# -- building ----------------------------------------------------------------------------


def build_leaderboard(
    frame: pd.DataFrame,
    *,
    kind: str | None = None,
    metric: str | None = None,
    group_by: Sequence[str] | None = None,
) -> Leaderboard:
    """Aggregate, pivot and rank ``frame`` (from ``load_results``) by one metric."""
    kind = _choose_kind(frame, kind)
    frame = frame[frame["kind"] == kind]
    if "lr_tuning" in frame.columns:  # tuning trials chose a rate; they are not results
        frame = frame[frame["lr_tuning"] != "trial"]
    chosen = resolve_metric(metric, kind, frame.columns)
    if chosen.name not in frame.columns:
        raise UsageError(f"--metric: these {kind} results have no {chosen.name!r} column")
    column_field: str | None = COLUMN_FIELD[kind]
    config = list(frame.attrs.get("config_columns") or _guess_config(frame))
    facts = [f for f in ENVIRONMENT_FACTS if f in frame.columns]
    notes: list[str] = []
    if group_by:
        rows = [_require(frame, f, "--group-by") for f in group_by]
        if column_field in rows:
            column_field = None
    else:
        rows = [f for f in BASE_ROWS[kind] if f in frame.columns]
    if not rows:
        raise UsageError("--group-by: give at least one column to use as row labels")
    if column_field not in frame.columns:
        column_field = None
    split = [] if group_by else _split_fields(frame, rows, column_field, config)
    differing_facts = [f for f in facts if frame[f].nunique(dropna=False) > 1]
    for fact in differing_facts:
        values = ", ".join(sorted(str(v) for v in frame[fact].unique()))
        notes.append(f"runs differ in {fact} ({values}): shown as separate rows, never averaged")
    rows = rows + split + [f for f in differing_facts if f not in rows]
    if group_by:
        for name in _split_fields(frame, rows, column_field, config):
            values = ", ".join(sorted(str(v) for v in frame[name].dropna().unique()))
            notes.append(f"aggregated over differing {name} ({values}) as --group-by asked")
    cells = _aggregate(frame, chosen, kind, rows, column_field)
    columns = sorted(cells[column_field or "_all"].unique(), key=_sort_key)
    order = _row_order(cells, rows)
    context = shared_context(frame, kind, exclude=rows)
    environment = shared_environment(frame)
    runs = list(dict.fromkeys(str(r) for r in frame["run_id"])) if "run_id" in frame else []
    return Leaderboard(
        kind, chosen, rows, column_field, columns, cells, order, context, environment, notes, runs
    )


def shared_context(frame: pd.DataFrame, kind: str, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Settings every row shares (batch size, dtype, threads...): said once, in a header."""
    return {
        f: frame[f].iloc[0]
        for f in CONTEXT_FIELDS[kind]
        if f in frame.columns
        and f not in exclude
        and frame[f].nunique(dropna=False) == 1
        and not _missing(frame[f].iloc[0])
    }


def shared_environment(frame: pd.DataFrame) -> dict[str, Any]:
    """Hardware and version facts every row shares (those that differ are row labels)."""
    return {
        f: frame[f].iloc[0]
        for f in (*ENVIRONMENT_FACTS, "commit_dirty")
        if f in frame.columns and not frame.empty and frame[f].nunique(dropna=False) == 1
    }


def _choose_kind(frame: pd.DataFrame, kind: str | None) -> str:
    if frame.empty or "kind" not in frame.columns:
        raise UsageError("no results to tabulate (the run directories hold no readable rows)")
    present = sorted(str(k) for k in frame["kind"].dropna().unique())
    if kind is None:
        if len(present) > 1:
            raise UsageError(f"these runs hold {' and '.join(present)} rows; choose with --kind")
        kind = present[0]
    if kind not in BASE_ROWS:
        raise UsageError(f"--kind: {kind!r} is not bench or train")
    if kind not in present:
        raise UsageError(f"--kind {kind}: these runs hold only {', '.join(present)} rows")
    return kind


def _require(frame: pd.DataFrame, name: str, option: str) -> str:
    if name not in frame.columns:
        raise UsageError(f"{option}: no column {name!r} in these results")
    return name


def _guess_config(frame: pd.DataFrame) -> list[str]:
    """Config columns when ``frame.attrs`` lost them (a frame built by hand)."""
    return [
        c
        for c in frame.columns
        if c in CONTEXT_FIELDS["bench"] + CONTEXT_FIELDS["train"]
        or c
        in (
            "mixer",
            "optimizer",
            "task",
            "tokens",
            "mixer_options",
            "optimizer_options",
            "task_options",
        )
    ]


def _split_fields(
    frame: pd.DataFrame, rows: list[str], column: str | None, config: list[str]
) -> list[str]:
    """Config fields that take several values inside one (row, column) cell.

    Such a field must become a row label, or its values would be averaged together. A field
    that follows the column (the token grid follows the token count) never varies inside a
    cell, so it is not added.
    """
    keys = [*rows, column] if column else list(rows)
    preferred = [f for f in CONTEXT_FIELDS["bench"] + CONTEXT_FIELDS["train"] if f in config]
    candidates = list(dict.fromkeys(preferred + sorted(config)))
    added: list[str] = []
    for name in candidates:
        if name in keys or name in added or name in REPLICATE_FIELDS:
            continue
        if name in BOOKKEEPING_FIELDS or name not in frame.columns:
            continue
        by = keys + added
        spread = frame.groupby(by, dropna=False)[name].nunique(dropna=False) if by else None
        if spread is not None and int(spread.max()) > 1:
            added.append(name)
    return added


def _aggregate(
    frame: pd.DataFrame, metric: Metric, kind: str, rows: list[str], column: str | None
) -> pd.DataFrame:
    import pandas as pd

    frame = frame.copy()
    if column is None:
        column = "_all"
        frame[column] = metric.name
    records = []
    for labels, group in frame.groupby([*rows, column], dropna=False, sort=False):
        values = pd.to_numeric(group[metric.name], errors="coerce")
        good = values[(group["status"] == "ok").to_numpy() & values.notna().to_numpy()]
        record = dict(zip([*rows, column], labels, strict=True))
        record.update(n=len(good), failed=len(group) - len(good), low=math.nan, high=math.nan)
        if len(good) == 0:
            statuses = group["status"][group["status"] != "ok"]
            record.update(
                value=math.nan,
                spread=math.nan,
                noisy=False,
                status=statuses.mode().iloc[0] if len(statuses) else "missing",
            )
        elif kind == "train":
            record.update(
                value=float(good.mean()),
                status="ok",
                noisy=False,
                spread=float(good.std(ddof=1)) if len(good) > 1 else math.nan,
            )
            if "lr_tuning" in group and (group["lr_tuning"] == "tuned").all():
                record["tuned_lr"] = float(group["lr"].iloc[0])  # one rate per tuned cell
        else:
            center = float(good.median())
            spread = (
                float(good.quantile(0.75) - good.quantile(0.25))
                if len(good) > 1
                else (_own_iqr(group, metric))
            )
            noisy = metric.timing and (
                _any_noisy(group)
                or (len(good) > 1 and center > 0 and spread / center > NOISY_REL_SPREAD)
            )
            record.update(value=center, spread=spread, noisy=bool(noisy), status="ok")
            record.update(_median_ci(group[group["status"] == "ok"], metric))
        records.append(record)
    cells = pd.DataFrame.from_records(records)
    ascending = not metric.higher_is_better
    cells["rank"] = cells.groupby(column)["value"].rank(method="min", ascending=ascending)
    counts = cells.groupby(column)["value"].transform("count")
    cells["best"] = (cells["rank"] == 1) & (counts > 1)
    return cells


def _median_ci(rows: pd.DataFrame, metric: Metric) -> dict[str, float]:
    """``low``/``high``: the stored 95 % CI of a median metric (median over repeats)."""
    stem = metric.name.removesuffix("_median")
    low, high = f"{stem}_ci95_lo", f"{stem}_ci95_hi"
    if stem == metric.name or low not in rows.columns or high not in rows.columns:
        return {}
    return {"low": float(rows[low].median()), "high": float(rows[high].median())}


def _own_iqr(group: pd.DataFrame, metric: Metric) -> float:
    """The IQR a single bench row reports for its own samples, where it matches the metric."""
    if metric.name == "latency_ms_median" and "latency_ms_iqr" in group.columns:
        return float(group["latency_ms_iqr"].iloc[0])
    return math.nan


def _any_noisy(group: pd.DataFrame) -> bool:
    if "noisy" not in group.columns:
        return False
    return bool(group["noisy"].fillna(False).astype(bool).any())


def _row_order(cells: pd.DataFrame, rows: list[str]) -> list[tuple[Any, ...]]:
    """Rows by mean rank over the columns they have (best first), then by label."""
    mean_rank = cells.groupby(rows, dropna=False, sort=False)["rank"].mean()
    keyed = []
    for labels, value in mean_rank.items():
        labels = labels if isinstance(labels, tuple) else (labels,)
        keyed.append(
            (math.inf if _missing(value) else value, tuple(map(_sort_key, labels)), labels)
        )
    return [labels for _, _, labels in sorted(keyed)]


# -- small helpers -----------------------------------------------------------------------


def format_number(value: float) -> str:
    """Three to four significant digits, thousands separated, never scientific for counts."""
    if _missing(value):
        return ""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    if magnitude >= 0.01 or magnitude == 0:
        return f"{value:.3f}"
    return f"{value:.3g}"


def describe_environment(env: dict[str, Any]) -> str:
    parts = []
    for name, label in (
        ("device_name", ""),
        ("torch_version", "torch "),
        ("python_version", "Python "),
        ("mixbench_version", "mixbench "),
    ):
        if not _missing(env.get(name)):
            parts.append(f"{label}{env[name]}")
    cpu = env.get("cpu")
    if not _missing(cpu) and cpu != env.get("device_name"):
        parts.insert(1, f"host CPU {cpu}")
    if not _missing(env.get("commit")):
        dirty = " (uncommitted changes)" if env.get("commit_dirty") is True else ""
        parts.append(f"commit {env['commit']}{dirty}")
    return " · ".join(parts)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pandas NA
    except (TypeError, ValueError):
        return False


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers before text, each in natural order (256 before 1024)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def _md(text: str) -> str:
    """Escape what would break a GitHub table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
