"""Sweep files, first pass: keys, types, names, products, include/exclude, and errors that name
the file, the key and the accepted values; the name cache that keeps that pass torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mixbench.errors import UsageError
from mixbench.sweep.sweep_file import _differences, parse_sweep


def parse(text: str) -> Any:
    return parse_sweep(textwrap.dedent(text), "s.toml")


def clis(text: str) -> list[dict[str, Any]]:
    return [point.cli() for point, _ in parse(text).points]


def fails(text: str, *fragments: str) -> str:
    with pytest.raises(UsageError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("s.toml: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_lists_expand_into_a_product_and_scalars_stay_fixed() -> None:
    points = clis("""
        [[grid]]
        kind = "train"
        mixer = ["attention", "pooling"]
        seed = [0, 1, 2]
        steps = 10
        batch-size = 32
    """)
    assert len(points) == 6
    assert points[0] == {"mixer": ["attention"], "seed": "0", "steps": 10, "batch_size": 32}
    assert {(p["mixer"][0], p["seed"][0]) for p in points} == {
        (m, s) for m in ("attention", "pooling") for s in ("0", "1", "2")
    }


def test_values_take_the_shape_the_command_line_gives_them() -> None:
    (point,) = clis("""
        [[grid]]
        kind = "bench"
        mixer = "window"
        tokens = 64
        mixer_option = {window_size = 4, shift = true}
        compile = false
    """)
    assert point == {
        "mixer": ["window"],
        "tokens": "64",
        "mixer_option": ["window_size=4", "shift=true"],
        "compile": False,
    }


def test_a_list_of_option_tables_is_an_axis() -> None:
    points = clis("""
        [[grid]]
        kind = "train"
        mixer = "pooling"
        mixer_option = [{pool_size = 3}, {pool_size = 5}]
    """)
    assert [p["mixer_option"] for p in points] == [["pool_size=3"], ["pool_size=5"]]


def test_exclude_drops_matches_and_include_adds_its_own_product() -> None:
    points = parse("""
        [[grid]]
        kind = "train"
        mixer = ["attention", "pooling"]
        seed = [0, 1]
        exclude = [{mixer = "pooling", seed = 1}]
        include = [{mixer = "mlp", seed = [0, 1]}]
    """).points
    got = [(p.values["mixer"], p.values["seed"], p.origin) for p, _ in points]
    assert got == [
        ("attention", 0, "grid[0]"),
        ("attention", 1, "grid[0]"),
        ("pooling", 0, "grid[0]"),
        ("mlp", 0, "grid[0].include[0]"),
        ("mlp", 1, "grid[0].include[0]"),
    ]


def test_defaults_apply_where_the_command_has_the_key_and_grids_override() -> None:
    sweep = parse("""
        timeout = 30
        [defaults]
        device = "cpu"
        steps = 7
        [[grid]]
        kind = "bench"
        mixer = "identity"
        [[grid]]
        kind = "train"
        mixer = "identity"
        steps = 9
        timeout = 5
    """)
    (bench, bench_timeout), (train, train_timeout) = sweep.points
    assert bench.cli() == {"device": "cpu", "mixer": ["identity"]}  # bench has no --steps
    assert train.cli()["steps"] == 9 and train.cli()["device"] == "cpu"
    assert (bench_timeout, train_timeout) == (30.0, 5.0)


def test_top_level_settings() -> None:
    sweep = parse("""
        name = "mine"
        executor = "inline"
        max_parallel = 3
        [[grid]]
        kind = "train"
        mixer = "identity"
    """)
    assert (sweep.name, sweep.executor, sweep.max_parallel) == ("mine", "inline", 3)


def test_a_typo_in_a_mixer_name_names_file_key_and_suggestion() -> None:
    message = fails(
        """
        [[grid]]
        kind = "train"
        mixer = ["attention", "atention"]
    """,
        "grid[0].mixer[1]",
        "unknown mixer 'atention'",
        "Did you mean 'attention'",
    )
    assert "Registered: " in message and "pooling" in message


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ('kind = "trian"', ["grid[0].kind", "Did you mean 'train'", "Accepted: bench, train"]),
        ('kind = "train"\nmixr = "pooling"', ["grid[0].mixr", "Did you mean 'mixer'"]),
        ('kind = "train"\nmixer = "pooling"\nsteps = "ten"', ["grid[0].steps", "whole number"]),
        ('kind = "train"\nmixer = "pooling"\nsteps = []', ["grid[0].steps", "empty list"]),
        ('kind = "train"\nmixer = "pooling"\nout = "x"', ["grid[0].out", "command line"]),
        ('kind = "train"\nmixer = "pooling"\nbatch-size = 1\nbatch_size = 2', ["given twice"]),
        ('kind = "train"\noptimizer = "adamm"', ["grid[0].optimizer", "Did you mean 'adam'"]),
        (
            'kind = "train"\nmixer = "pooling"\nmixer_option = {pool_sise = 3}',
            ["grid[0].mixer_option", "'pool_sise'", "Did you mean 'pool_size'"],
        ),
        (
            'kind = "train"\nmixer = ["pooling"]\nexclude = [{mixer = "mlp"}]',
            ["grid[0].exclude[0]", "matches no combination"],
        ),
        (
            'kind = "train"\nmixer = ["pooling"]\nexclude = [{seed = 3}]',
            ["grid[0].exclude[0].seed", "does not set --seed"],
        ),
        ('kind = "train"\nmixer = "pooling"\ninclude = {mixer = "mlp"}', ["grid[0].include"]),
    ],
)
def test_grid_errors(body: str, fragments: list[str]) -> None:
    fails("[[grid]]\n" + body + "\n", *fragments)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('exeutor = "ray"\n[[grid]]\nkind = "train"', ["unknown key 'exeutor'", "'executor'"]),
        (
            'executor = "rai"\n[[grid]]\nkind = "train"',
            ["executor: unknown executor 'rai'", "'ray'"],
        ),
        ('steps = 3\n[[grid]]\nkind = "train"', ["steps: cell options go in a grid table"]),
        ('[defaults]\nstep = 3\n[[grid]]\nkind = "train"', ["defaults.step", "'steps'"]),
        ('max_parallel = 0\n[[grid]]\nkind = "train"', ["max_parallel", ">= 1"]),
        ('name = "x"', ["no grids"]),
        ('[[grid]]\nkind = "train"\nmixer = "pooling" "mlp"\n', ["not valid TOML", "line 3"]),
    ],
)
def test_file_errors(text: str, fragments: list[str]) -> None:
    fails(text, *fragments)


def test_differences_name_the_changed_keys() -> None:
    old = {"grid": [{"kind": "train", "steps": 5}], "name": "a"}
    new = {"grid": [{"kind": "train", "steps": 6, "seed": [1]}]}
    assert _differences(old, new, "") == [
        "grid[0].steps: 5 -> 6",
        "grid[0].seed added ([1])",
        "name removed",
    ]


# -- the name cache --------------------------------------------------------------------------


def test_name_cache_answers_without_loading_the_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixbench.core import plugin_loader as plugins
    from mixbench.core.namecache import known_names

    monkeypatch.setenv("MIXBENCH_CACHE_DIR", str(tmp_path))
    first = known_names()  # cold: asks the registry, writes the cache
    assert "attention" in first.names("mixer") and first.complete
    assert (tmp_path / "names.json").exists()
    plugins.reset()
    again = known_names()  # warm: read from the cache
    assert plugins._CURRENT is None  # the plugins (and torch) were not loaded
    assert again.entries == first.entries and again.complete


def test_name_cache_notices_a_changed_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_dist: Any
) -> None:
    from mixbench.core import plugin_loader as plugins
    from mixbench.core.namecache import known_names

    monkeypatch.setenv("MIXBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXBENCH_PLUGINS", "sweepy-plugin")
    source = """
        import mixbench

        def make(dim, grid):
            raise NotImplementedError("only its name matters here")

        @mixbench.hookimpl
        def register_mixers(register):
            register("{name}", make)
    """
    site = install_dist(
        "sweepy-plugin", "sweepy", source.format(name="sweepy_one"), {"sweepy": "sweepy"}
    )
    assert "sweepy_one" in known_names().names("mixer")
    plugins.reset()
    sys.modules.pop("sweepy", None)
    module = site / "sweepy.py"
    module.write_text(textwrap.dedent(source.format(name="sweepy_two_longer")))
    assert "sweepy_two_longer" in known_names().names("mixer")  # file changed: rebuilt


def test_a_typo_fails_before_torch_is_imported(tmp_path: Path) -> None:
    """The "typo fails in under a second" criterion, asserted as behaviour: with the name
    cache warm, the whole command runs and fails without importing torch (~3 s here)."""
    sweep = tmp_path / "typo.toml"
    sweep.write_text('[[grid]]\nkind = "train"\nmixer = ["pooling", "atention"]\nsteps = 5\n')
    script = textwrap.dedent(f"""
        import json, sys
        from mixbench.cli.app import main
        try:
            main(["sweep", {str(sweep)!r}])
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
    """)
    env = {**os.environ, "MIXBENCH_CACHE_DIR": str(tmp_path / "cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )
        for _ in range(2)
    ]
    cold, warm = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert cold["code"] == warm["code"] == 2
    assert warm["torch"] is False
    for run in runs:
        assert f"{sweep}: grid[0].mixer[1]: unknown mixer 'atention'" in run.stderr
        assert "Did you mean 'attention'" in run.stderr


def test_a_table_under_a_name_scopes_options_to_it() -> None:
    sgd, sam = clis("""
        [[grid]]
        kind = "train"
        optimizer = ["sgd", "sam"]
        optimizer_option = {momentum = 0.9, sam = {rho = 0.1}}
    """)[:2]
    assert sgd["optimizer"] == ["sgd"] and sgd["optimizer_option"] == ["momentum=0.9"]
    assert sam["optimizer"] == ["sam"]
    assert sam["optimizer_option"] == ["momentum=0.9", "sam.rho=0.1"]
    fails(
        """
        [[grid]]
        kind = "train"
        optimizer = ["sgd", "adam"]
        optimizer_option = {adam = {epz = 1e-8}}
    """,
        "grid[0].optimizer_option",
        "no optimizer of adam has an option 'epz'",
        "'eps'",
    )


def test_a_scoped_option_reaches_only_its_own_name(tmp_path: Path) -> None:
    """``mixer_option = {pooling = {pool_size = 5}}`` beside other mixers: pooling's cells get
    it, the others are planned without it (bench and train grids alike)."""
    from mixbench.sweep.sweep_file import load_sweep

    sweep_file = tmp_path / "scoped.toml"
    sweep_file.write_text(
        'name = "scoped"\n'
        '[[grid]]\nkind = "train"\nmixer = ["attention", "pooling"]\ntask = "digits"\n'
        "steps = 5\nmixer_option = {pooling = {pool_size = 5}}\n"
        '[[grid]]\nkind = "bench"\nmixer = ["window", "pooling"]\ntokens = [64]\n'
        "mixer_option = {window = {window_size = 4}}\n"
    )
    cells = [planned.cell for planned in load_sweep(sweep_file).cells]
    options = {(c.kind, c.config["mixer"]): c.config["mixer_options"] for c in cells}
    assert options == {
        ("train", "attention"): {},
        ("train", "pooling"): {"pool_size": 5},
        ("bench", "window"): {"window_size": 4},
        ("bench", "pooling"): {},
    }
