"""The result store and cell keys: durable rows, forgiving reads, stable keys."""

from __future__ import annotations

import json
from pathlib import Path

from mixbench.runs.cells import Cell, cell_key, grid_for_tokens
from mixbench.runs.store import RunDir, append_row, read_rows


def row(key: str) -> dict[str, object]:
    return {"kind": "bench", "key": key, "status": "ok", "config": {"mixer": "x"}}


def test_rows_round_trip_and_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_row(path, row("a"))
    with open(path, "a") as handle:
        handle.write('{"kind": "bench", "key": "b"}\n')  # missing fields
        handle.write("not json\n")
    append_row(path, row("c"))
    rows, problems = read_rows(path)
    assert [r["key"] for r in rows] == ["a", "c"]
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [
        (2, "missing field(s): status, config"),
        (3, "not JSON"),
    ]
    assert str(problems[1]).startswith(f"{path}:3: ")


def test_a_row_appended_after_a_torn_line_survives(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_row(path, row("a"))
    with open(path, "a") as handle:
        handle.write(json.dumps(row("torn"))[:25])  # killed mid-write
    rows, problems = read_rows(path)
    assert [r["key"] for r in rows] == ["a"]
    assert problems[0].reason.startswith("torn last line")
    append_row(path, row("b"))  # a resumed run goes on writing
    rows, problems = read_rows(path)
    assert [r["key"] for r in rows] == ["a", "b"]
    assert [p.line for p in problems] == [2]


def test_run_dirs_are_unique_and_manifests_atomic(tmp_path: Path) -> None:
    first, second = RunDir.create(tmp_path, "bench"), RunDir.create(tmp_path, "bench")
    assert first.path != second.path and first.path.name.startswith("bench-")
    first.write_manifest({"status": "running"})
    assert first.update_manifest(status="complete")["status"] == "complete"
    assert first.read_manifest() == {"status": "complete"}
    assert not list(first.path.glob(".*.tmp"))


def test_cell_keys_are_stable_and_ignore_how_a_number_was_written() -> None:
    config = {"mixer": "attention", "lr": 1.0, "tokens": 256, "options": {"rho": 2.0}}
    same = {"tokens": 256, "lr": 1, "mixer": "attention", "options": {"rho": 2}}
    assert cell_key("train", config) == cell_key("train", same)
    assert cell_key("train", config) != cell_key("bench", config)
    assert cell_key("train", config) != cell_key("train", {**config, "lr": 1.5})
    assert cell_key("train", config) == cell_key("train", {**config, "out": "elsewhere"})
    assert Cell("train", config).key == cell_key("train", config)


def test_grid_layout_of_a_token_count() -> None:
    assert grid_for_tokens(1024, 2) == (32, 32)
    assert grid_for_tokens(512, 2) == (16, 32)
    assert grid_for_tokens(13, 2) == (1, 13)
    assert grid_for_tokens(100, 1) == (100,)
