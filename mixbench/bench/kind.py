"""The ``bench`` kind of cell: registered with ``mixbench.runs.cell_kinds``.

A bench cell's results are times, so it runs alone and records the machine's probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixbench.bench.options import KEYS
from mixbench.runs.cell_kinds import CellKind, register_cell_kind


def run_bench_job(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Measure one bench cell in this process (the kind's runner)."""
    from mixbench.bench.cell import run_cell

    return {"row": run_cell(payload), "curves": None}


register_cell_kind(
    CellKind(
        name="bench",
        options="mixbench.bench.options:BenchOptions",
        planner="mixbench.bench.options:bench_cells",
        runner="mixbench.bench.kind:run_bench_job",
        timing=True,
        preload=(
            "mixbench.bench.cell",
            "mixbench.measure.flops",
            "mixbench.measure.memory",
            "mixbench.authoring.conformance",
        ),
        keys=KEYS,
    )
)
