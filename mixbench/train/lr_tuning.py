"""Choosing a learning rate from tuning trials: the rule, in one place.

The rule (also in the README, "Training protocol"):

* each rate of the grid is scored by its trials' **final validation accuracy**
  (``final_val_acc``), averaged over the tuning seeds; the test split is never looked at;
* a rate with any trial that did not finish ``ok`` (diverged, failed, out of memory,
  skipped) is never chosen, whatever its other trials scored;
* the highest score wins; a tie (scores equal to 1e-9) goes to the **lower** rate, the
  more conservative choice;
* a choice on the grid's lowest or highest rate carries a warning: the best rate may lie
  outside the grid, so the grid should be widened.

Knows nothing about torch, the command line or the run directory: rows in, a choice out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

METRIC = "final_val_acc"
TIE = 1e-9


@dataclass(frozen=True)
class Selection:
    """The chosen rate (None when no rate qualified), each rate's mean score (None for a
    rate that never qualifies), and the edge warning."""

    chosen: float | None
    scores: dict[float, float | None] = field(default_factory=dict)
    warning: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)  # lr, seed, status, metric


def select_lr(grid: Sequence[float], trials: Sequence[Mapping[str, Any]]) -> Selection:
    """Apply the rule above to one group's trial rows (``config.lr`` says each one's rate)."""
    by_rate: dict[float, list[Mapping[str, Any]]] = {float(lr): [] for lr in grid}
    for row in trials:
        by_rate.setdefault(float(row["config"]["lr"]), []).append(row)
    scores: dict[float, float | None] = {}
    for lr, rows in sorted(by_rate.items()):
        values = [(r.get("metrics") or {}).get(METRIC) for r in rows]
        ok = bool(rows) and all(r.get("status") == "ok" for r in rows)
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        scores[lr] = statistics.fmean(numbers) if ok and len(numbers) == len(rows) else None
    chosen: float | None = None
    for lr, score in sorted(scores.items()):  # ascending: a later rate must beat, not tie
        best = scores[chosen] if chosen is not None else None
        if score is not None and (best is None or score > best + TIE):
            chosen = lr
    warning = None
    rates = sorted(scores)
    if chosen is not None and len(rates) > 1 and chosen in (rates[0], rates[-1]):
        edge = "lowest" if chosen == rates[0] else "highest"
        warning = f"the chosen rate {chosen:g} is the grid's {edge}: the best may lie outside it"
    trials_seen = [
        {
            "lr": float(r["config"]["lr"]),
            "seed": r["config"].get("seed"),
            "status": r.get("status"),
            METRIC: (r.get("metrics") or {}).get(METRIC),
        }
        for r in sorted(trials, key=lambda r: (float(r["config"]["lr"]), r["config"].get("seed")))
    ]
    return Selection(chosen, scores, warning, trials_seen)


def trial_record(tuning: Mapping[str, Any], selection: Selection) -> dict[str, Any]:
    """What a tuned row records about its tuning: grid, seeds, rule, scores, choice."""
    return {
        "grid": list(tuning["grid"]),
        "tune_seeds": list(tuning["tune_seeds"]),
        "metric": METRIC,
        "trials": selection.trials,
        "scores": [{"lr": lr, "mean": score} for lr, score in sorted(selection.scores.items())],
        "chosen_lr": selection.chosen,
        "warning": selection.warning,
    }
