"""The peers study's floor column: model FLOPs at the probed matmul rate, over the peer's time.

``benchmarks/peers.py`` needs timm and reformer-pytorch (its own nox environment), so the
measuring side is not run here; the renderer that turns its rows into the README's table is.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_results_tables import regenerate


def _write(root: Path, environment: dict[str, object], row_extra: dict[str, object]) -> None:
    row = {
        "case": "window",
        "shape": "32x32",
        "peer": "timm",
        "inference": {"mixbench": 0.004, "peer": 0.02, "ratio": 0.2},
        "training": {"mixbench": 0.03, "peer": 0.06, "ratio": 0.5},
        "equality": "",
        "max_abs_difference": None,
        **row_extra,
    }
    environment = {
        "date": "2026-11-30 12:00 UTC",
        "cpu": "test cpu",
        "cores": 2,
        "threads": 2,
        "torch": "2",
        "timm": "1",
        "reformer_pytorch": "1.4",
        "load_average_start": 0.1,
        **environment,
    }
    (root / "peers").mkdir()
    payload = {"environment": environment, "rows": [row]}
    (root / "peers" / "peers.json").write_text(json.dumps(payload))


def test_floor_is_model_flops_at_the_probed_rate_over_the_peer_time(tmp_path: Path) -> None:
    # 1 GFLOP forward at 100 GFLOP/s is 10 ms against the peer's 20 ms: 0.50; the training
    # step's 3 GFLOP, 30 ms against 60 ms: 0.50.
    flops = {"inference": 1_000_000_000, "training": 3_000_000_000}
    _write(tmp_path, {"matmul_gflops": 100.0}, {"model_flops": flops})
    table = regenerate().load_studies()["peers"].render(tmp_path)["peers.md"]
    assert "| 0.20 | 0.50 | 0.50 / 0.50 | not compared |" in table
    assert "(100 GFLOP/s" in table


def test_rows_from_before_the_floor_render_a_dash(tmp_path: Path) -> None:
    _write(tmp_path, {}, {})
    table = regenerate().load_studies()["peers"].render(tmp_path)["peers.md"]
    assert "| 0.20 | 0.50 | - | not compared |" in table
    assert "GFLOP/s" not in table


def test_ratios_carry_their_confidence_interval_when_the_run_recorded_one(
    tmp_path: Path,
) -> None:
    interval = {"ratio_low": 0.18, "ratio_high": 0.22, "ratio_coverage": 0.961}
    timings = {
        "inference": {"mixbench": 0.004, "peer": 0.02, "ratio": 0.2, **interval},
        "training": {"mixbench": 0.03, "peer": 0.06, "ratio": 0.5, **interval},
    }
    _write(tmp_path, {}, timings)
    table = regenerate().load_studies()["peers"].render(tmp_path)["peers.md"]
    assert "| 0.20 [0.18, 0.22] | 0.50 [0.18, 0.22] | - |" in table
    assert "[its 96% confidence interval" in table
