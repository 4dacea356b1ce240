"""A new kind of cell is one registration: the sweep reader takes its keys from its options
dataclass, and the driver, executors and run directory run it with no change."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mixbench.errors import UsageError
from mixbench.runs import cell_kinds
from mixbench.runs.cell_kinds import CellKind, cell_kind, register_cell_kind
from mixbench.runs.cells import Cell
from mixbench.runs.rows import SCHEMA_VERSION, row_skeleton
from mixbench.runs.store import read_rows

HERE = __name__  # how the driver imports the functions below


@dataclass(frozen=True)
class ToyOptions:
    """A toy kind's options: ``count`` cells, each labelled."""

    count: int = 1
    labels: tuple[str, ...] = ("a",)
    scale: float = 1.0
    timeout: float = 30.0  # run-level: a sweep's own ``timeout`` key, not a cell key


def plan_toy(**given: Any) -> list[Cell]:
    options = ToyOptions(
        count=int(given.get("count", 1)),
        labels=tuple(str(given.get("label", "a")).split(",")),
        scale=float(given.get("scale", 1.0)),
    )
    return [
        Cell("toy", {"label": label, "index": i, "scale": options.scale})
        for label in options.labels
        for i in range(options.count)
    ]


def run_toy(payload: Mapping[str, Any]) -> dict[str, Any]:
    config = payload["config"]
    row = row_skeleton("toy", payload["key"], config, payload.get("run_id"))
    row["metrics"] = {"value": config["index"] * config["scale"]}
    return {"row": row, "curves": None}


@pytest.fixture
def toy_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[CellKind]:
    cell_kinds.cell_kinds()  # the built-in kinds first, so the toy one is removed after
    kind = CellKind(
        name="toy",
        options=f"{HERE}:ToyOptions",
        planner=f"{HERE}:plan_toy",
        runner=f"{HERE}:run_toy",
        keys={"labels": "label"},
    )
    monkeypatch.setitem(cell_kinds._KINDS, "toy", kind)
    yield kind


def test_the_builtin_kinds_are_registered() -> None:
    assert {"bench", "train"} <= set(cell_kinds.cell_kinds())
    assert cell_kind("bench").timing and not cell_kind("train").timing
    with pytest.raises(UsageError, match=r"unknown kind 'tarin'.*Did you mean 'train'"):
        cell_kind("tarin")


def test_registering_one_name_twice_is_refused(toy_kind: CellKind) -> None:
    other = CellKind("toy", toy_kind.options, toy_kind.planner, toy_kind.runner, timing=True)
    with pytest.raises(ValueError, match="registered twice"):
        register_cell_kind(other)


def test_sweep_keys_are_the_options_fields(toy_kind: CellKind) -> None:
    from mixbench.sweep.grid_table import default_timeout, option_keys

    keys = option_keys("toy")
    assert set(keys) == {"count", "label", "scale"}  # timeout is the sweep's own key
    assert (keys["count"].shape, keys["label"].shape, keys["scale"].shape) == (
        "int",
        "list",
        "float",
    )
    assert keys["label"].flag == "--label"
    assert default_timeout("toy") == 30.0


def test_a_sweep_of_a_new_kind_runs_through_the_driver(toy_kind: CellKind, tmp_path: Path) -> None:
    from mixbench.cli.app import main

    sweep = tmp_path / "toy.toml"
    sweep.write_text('[[grid]]\nkind = "toy"\ncount = 2\nlabel = ["a", "b"]\nscale = 0.5\n')
    with pytest.raises(SystemExit) as ended:
        main(["sweep", str(sweep), "--executor", "inline", "-j", "2", "--out", str(tmp_path)])
    assert ended.value.code in (0, None)
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    rows, problems = read_rows(run_dir / "results.jsonl")
    assert not problems
    assert sorted((r["config"]["label"], r["metrics"]["value"]) for r in rows) == [
        ("a", 0.0),
        ("a", 0.5),
        ("b", 0.0),
        ("b", 0.5),
    ]
    assert {(r["kind"], r["status"], r["schema"]) for r in rows} == {("toy", "ok", SCHEMA_VERSION)}


def test_a_bad_key_of_a_new_kind_names_the_accepted_ones(
    toy_kind: CellKind, tmp_path: Path
) -> None:
    from mixbench.sweep.sweep_file import parse_sweep

    with pytest.raises(UsageError, match=r"unknown key 'cont'.*'count'"):
        parse_sweep('[[grid]]\nkind = "toy"\ncont = 2\n', "toy.toml")


def test_the_public_paths_are_the_code_they_re_export() -> None:
    """Plugin authors import these where they always have; the code lives in sub-packages."""
    import mixbench.executors
    import mixbench.plugins
    import mixbench.pytest_plugin
    import mixbench.testing
    from mixbench.authoring import conformance, pytest_plugin
    from mixbench.core import plugin_loader
    from mixbench.runs import executors

    homes = {
        mixbench.executors: executors,
        mixbench.testing: conformance,
        mixbench.pytest_plugin: pytest_plugin,
        mixbench.plugins: plugin_loader,
    }
    for public, home in homes.items():
        assert all(getattr(public, name) is getattr(home, name) for name in public.__all__)
    # Names the layout's move once dropped: each must stay re-exported.
    assert {"import_string", "discover", "register_plugin"} <= set(mixbench.plugins.__all__)
    assert {"StopRequest", "Interrupted", "can_start", "run_jobs", "Job", "call_runner"} <= set(
        mixbench.executors.__all__
    )
    assert {"plugins_env_value", "mixbench_conformance"} <= set(mixbench.pytest_plugin.__all__)
    assert "check_mixer" in mixbench.testing.__all__
