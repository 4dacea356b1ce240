"""Which changes a bench run's cells can show: the warnings ``mixbench bench`` prints.

``mixbench compare`` calls a change only when the confidence interval of the ratio
NEW / BASE (``mixbench.report.compare.ratio_interval``) lies entirely beyond its
``--threshold``. How wide that interval is depends on how far apart each side's process
medians lie, so a run can say before any comparison which changes its cells could show:
compared with a second run whose processes spread alike, a cell whose processes are
``x_1 .. x_R`` gives the interval of the ratio of the cell with itself, scaled by the
change. A change smaller than that interval's upper end minus one cannot be told from no
change, whatever the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixbench.report.compare import ratio_interval
from mixbench.runs.repeats import process_medians, process_references

RECOMMENDED_THRESHOLD = 0.10  # the --threshold the README recommends for a CI gate


def resolvable_change(samples: Sequence[float]) -> float | None:
    """The smallest relative change that compare's interval would tell from no change
    between this cell and a run whose processes spread as ``samples`` do; None when the
    samples allow no interval (fewer than four processes: compare cannot judge at all)."""
    if len(samples) < 2:
        return None
    interval = ratio_interval(samples, samples)
    return None if interval is None else interval.high - 1


def resolution_warnings(rows: Sequence[Mapping[str, Any]], threshold: float) -> list[str]:
    """One line per finished cell whose processes resolve only changes larger than
    ``threshold``: compare could not tell a change of that size from none on such a cell.
    The samples are those compare judges: each process's median over its reference
    workload time when the row has them (the machine's drift taken out), else the medians
    as measured. Cells with too few processes for any interval get no line (compare says
    "not enough repeats to judge" of them)."""
    lines = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        medians, references = process_medians(row), process_references(row)
        corrected = len(references) == len(medians)
        judged = [m / r for m, r in zip(medians, references, strict=True)] if corrected else medians
        smallest = resolvable_change(judged)
        if smallest is not None and smallest > threshold:
            config = row.get("config") or {}
            size = config.get("tokens") or f"{config.get('image_size')}px"
            what = "drift-corrected process medians" if corrected else "process medians"
            lines.append(
                f"{config.get('mixer')} N={size}: its {len(judged)} {what} resolve only "
                f"changes beyond {smallest:.1%}, so compare cannot call a {threshold:.0%} "
                "change on this cell"
            )
    return lines
