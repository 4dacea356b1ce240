"""The summary of a training run: mean ± std over seeds, and what tuning chose.

Tuning trials (``config.lr_tuning.stage == "trial"``) are never in the main table: they
ran on the tuning seeds to pick a rate, and the test split of a trial is not a result.
The main table shows each group's learning rate (``tuned`` when chosen by tuning) and its
test accuracy at that rate; the tuning table shows every rate's validation score.
Imports no torch.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SUMMARY_COLUMNS = (  # (metric, heading, format, scale)
    ("test_acc", "test acc %", "{:.1f}", 100.0),
    ("final_val_acc", "val acc %", "{:.1f}", 100.0),
    ("best_val_acc", "best val %", "{:.1f}", 100.0),
    ("train_loss", "train loss", "{:.3g}", 1.0),
    ("grad_evals", "grad evals", "{:.0f}", 1.0),
    ("median_step_s", "step ms", "{:.1f}", 1e3),
    ("steps_to_target", "steps to target", "{:.0f}", 1.0),
    ("rho_sharpness", "rho-sharpness", "{:.3g}", 1.0),
    ("hessian_top_eig", "Hessian λmax", "{:.3g}", 1.0),
)


GROUP = ("mixer", "optimizer", "task")


def is_trial(row: Mapping[str, Any]) -> bool:
    return ((row.get("config") or {}).get("lr_tuning") or {}).get("stage") == "trial"


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group the non-trial rows whose configs differ only in the seed; for each metric, the
    mean, the sample standard deviation and the count over the seeds that finished ``ok``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if is_trial(row):
            continue
        identity = {k: v for k, v in row["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(identity, sort_keys=True), []).append(row)
    summary = []
    for members in groups.values():
        config = members[0]["config"]
        ok = [r for r in members if r["status"] == "ok"]
        tuning = members[0].get("lr_tuning") or {}
        entry: dict[str, Any] = {
            "mixer": label(config["mixer"], config["mixer_options"]),
            "optimizer": label(config["optimizer"], config["optimizer_options"]),
            "task": label(config["task"], config["task_options"]),
            "lr": _lr_text(config.get("lr"), bool(config.get("lr_tuning"))),
            "lr_warning": tuning.get("warning"),
            "seeds": len(members), "ok": len(ok),
            "problems": sorted({r["status"] for r in members if r["status"] != "ok"}),
        }  # fmt: skip
        for name, *_ in SUMMARY_COLUMNS:
            values = [float(r["metrics"][name]) for r in ok if r["metrics"].get(name) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            entry[name] = (statistics.fmean(values), spread, len(values)) if values else None
        summary.append(entry)
    return summary


def tuning_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per tuned group: its grid's validation scores and the chosen rate."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = row.get("lr_tuning")
        if not isinstance(record, Mapping) or is_trial(row):
            continue
        config = row["config"]
        name = " ".join(
            label(config[k], config[f"{k}_options"]) for k in ("mixer", "optimizer", "task")
        )
        seen.setdefault(name, {"group": name, **record})
    return list(seen.values())


def markdown_by_task(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: (mixer, optimizer) rows, task columns; each cell the test accuracy
    (mean ± std over seeds), the learning rate it ran at and the compute it took.

    "time" is the summed duration of every cell behind the entry — its tuning trials
    included, a reused trial counted once — so a tuned entry's cost is all of it.
    """
    entries = summarise(rows)
    tasks = list(dict.fromkeys(e["task"] for e in entries))
    spent: dict[tuple[str, ...], float] = {}
    for row in rows:
        if row.get("reused_trial"):
            continue
        config = row["config"]
        group = tuple(label(config[k], config[f"{k}_options"]) for k in GROUP)
        spent[group] = spent.get(group, 0.0) + float(row.get("duration_s") or 0.0)
    table: dict[tuple[str, str], dict[str, str]] = {}
    for e in entries:
        test = _cell(e["test_acc"], "{:.1f}", 100.0, e["ok"])
        if e["ok"] < e["seeds"]:
            test += f" ({e['ok']}/{e['seeds']} ok)"
        mark = " †" if e["lr_warning"] else ""
        time_s = spent.get((e["mixer"], e["optimizer"], e["task"]), 0.0)
        text = f"{test} · lr {e['lr'].replace(' (tuned)', '')}{mark} · {time_s:.0f} s"
        table.setdefault((e["mixer"], e["optimizer"]), {})[e["task"]] = text
    lines = ["| mixer | optimizer | " + " | ".join(tasks) + " |",
             "|---|---|" + "---:|" * len(tasks)]  # fmt: skip
    for (mixer, optimizer), cells in table.items():
        row_cells = [cells.get(t, "—") for t in tasks]
        lines.append(f"| {mixer} | {optimizer} | " + " | ".join(row_cells) + " |")
    lines.append("")
    lines.append(
        "test accuracy % (mean ± std over seeds) · learning rate · compute time "
        "(every cell behind the entry, tuning trials included)"
    )
    if any(e["lr_warning"] for e in entries):
        lines.append("† the chosen rate is at the edge of the grid: the best may lie outside it")
    return "\n".join(lines) + "\n"


def label(name: str, options: Mapping[str, Any]) -> str:
    if not options:
        return name
    return name + "(" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"


def _lr_text(lr: Any, tuned: bool) -> str:
    if not isinstance(lr, (int, float)):
        return "—"
    return f"{lr:g}" + (" (tuned)" if tuned else "")


def _cell(value: tuple[float, float, int] | None, fmt: str, scale: float, ok: int) -> str:
    if value is None:
        return "—"
    mean, std, count = value
    text = fmt.format(mean * scale)
    if count > 1 and math.isfinite(std):
        text += " ± " + fmt.format(std * scale)
    if count < ok:
        text += f" (n={count})"
    return text


def print_summary(rows: Sequence[Mapping[str, Any]], run_path: Path) -> None:
    """The rich tables: one line per (mixer, optimizer, task), mean ± std over seeds; then,
    for a tuned run, every rate's validation score and the choice."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # a log file or a pipe: no reason to squeeze the columns
        console = Console(highlight=False, width=max(console.width, 160))
    summary = summarise(rows)
    if summary:
        shown = [c for c in SUMMARY_COLUMNS if any(s[c[0]] is not None for s in summary)]
        table = Table(
            title=f"train: mean ± std over seeds ({run_path})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for heading in ("mixer", "optimizer", "task", "lr", "seeds ok"):
            table.add_column(heading, no_wrap=True)
        for _, heading, _, _ in shown:
            table.add_column(heading, justify="right")
        for s in summary:
            problems = f" ({', '.join(s['problems'])})" if s["problems"] else ""
            cells = [s["mixer"], s["optimizer"], s["task"], s["lr"]]
            cells.append(f"{s['ok']}/{s['seeds']}{problems}")
            cells += [_cell(s[name], fmt, scale, s["ok"]) for name, _, fmt, scale in shown]
            table.add_row(*cells)
        console.print(table)
    for entry in tuning_summary(rows):
        scores = ", ".join(
            f"{s['lr']:g}: " + ("—" if s["mean"] is None else f"{100 * s['mean']:.1f}")
            for s in entry["scores"]
        )
        chosen = entry["chosen_lr"]
        line = f"lr tuning {entry['group']}: val acc % by lr {{{scores}}} -> "
        line += "no rate qualified" if chosen is None else f"lr {chosen:g}"
        console.print(line + (f"  WARNING: {entry['warning']}" if entry["warning"] else ""))
    trials = [r for r in rows if is_trial(r)]
    if trials and not summary:
        done = sum(r["status"] == "ok" for r in trials)
        console.print(f"lr tuning: {len(trials)} trial(s) have rows ({done} ok)")
