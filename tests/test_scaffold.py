"""``mixbench new-plugin``: names, refusals, and a generated package of each kind that
installs (as a .dist-info on sys.path, the way pip leaves it), lists, and passes its own
tests. The same round trip with a real ``pip install -e`` runs in .ci/example-plugin.sh."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from mixbench.authoring.scaffold import KINDS, plugin_names, write_plugin
from mixbench.cli.app import app
from mixbench.errors import UsageError

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="module")
def _optimizer_modules_imported() -> None:
    """pytester's in-process runs drop the modules first imported inside them, so import
    what an optimizer step pulls in (torch._dynamo, ~3 s) once, out here."""
    import torch

    weight = torch.nn.Parameter(torch.ones(1))
    weight.grad = torch.ones(1)
    torch.optim.SGD([weight], lr=0.1).step()


def install_project(project: Path, site: Path) -> str:
    """Make ``project`` importable and its ``mixbench`` entry points visible, as an editable
    pip install does: ``src/`` on sys.path and a .dist-info built from its pyproject."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    points = meta["entry-points"]["mixbench"]
    (info / "entry_points.txt").write_text(
        "[mixbench]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
    )
    sys.path[:0] = [str(site), str(project / "src")]
    importlib.invalidate_caches()
    return str(meta["name"])


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """``installed(project)`` for one test; sys.path and sys.modules are restored after."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    yield lambda project: install_project(project, tmp_path / "site")
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        if name.startswith("my_"):
            del sys.modules[name]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-mixer", ("my-mixer", "my_mixer", "MyMixer")),
        ("Fancy.Attention_2", ("Fancy.Attention_2", "fancy_attention_2", "FancyAttention2")),
        ("x", ("x", "x", "X")),
    ],
)
def test_names_derived_from_the_package_name(name: str, expected: tuple[str, str, str]) -> None:
    names = plugin_names(name)
    assert (names.dist, names.package, names.class_name) == expected
    assert names.registered == names.package


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my mixer", "it contains ' '"),
        ("-mixer", "it starts or ends with"),
        ("mixer_", "it starts or ends with"),
        ("café", "it contains 'é'"),
        ("3d-mixer", "would start with a digit"),
        ("class", "is a Python keyword"),
        ("json", "would shadow the standard library module"),
        ("torch", "a module named 'torch' is already importable"),
        ("mixbench", "a module named 'mixbench' is already importable"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=why.replace("(", r"\(")):
        plugin_names(name)
    result = CliRunner().invoke(app, ["new-plugin", "--dir", str(tmp_path), "--", name])
    assert result.exit_code == 2
    assert why in result.output
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_an_existing_directory(tmp_path: Path) -> None:
    existing = tmp_path / "my-mixer"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["new-plugin", "my-mixer", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists; refusing to overwrite it" in result.output
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]


def test_refuses_an_unknown_kind_and_a_name_already_registered(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["new-plugin", "my-thing", "--kind", "loss", "--dir", str(tmp_path)]
    )
    assert (
        result.exit_code == 2
        and "--kind: 'loss' is not one of mixer, optimizer, task" in result.output
    )
    result = runner.invoke(app, ["new-plugin", "pooling", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "mixer 'pooling' is already registered by plugin 'pooling'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failure_half_way_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def failing_write(self: Path, text: str, encoding: str | None = None) -> int:
        calls.append(self)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_plugin("my-mixer", "mixer", tmp_path)
    assert calls and not (tmp_path / "my-mixer").exists()


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path) -> None:
    parent = tmp_path / "plugins" / "new"
    result = CliRunner().invoke(app, ["new-plugin", "my-mixer", "--dir", str(parent)])
    assert result.exit_code == 0, result.output
    project = parent / "my-mixer"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "src/my_mixer/__init__.py",
        "src/my_mixer/mixer.py",
        "tests/test_my_mixer.py",
    ]
    for step in (
        f"pip install -e {project}",
        f"pytest {project}",
        "mixbench bench --mixer my_mixer --quick",
    ):
        assert step in result.output
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["mixbench"] == {"my_mixer": "my_mixer.mixer"}
    assert pyproject["project"]["dependencies"] == ["mixbench>=0.1,<0.2"]


# (kind, tests the generated file collects, registry kind listed by `mixbench list`)
ROUND_TRIPS = [
    ("mixer", 5 * 2 + 1),  # five conformance checks on two grids, one behaviour test
    ("optimizer", 2 + 1),
    ("task", 4),
]


@pytest.mark.parametrize(("kind", "tests"), ROUND_TRIPS, ids=[k for k, _ in ROUND_TRIPS])
def test_generated_package_lists_and_passes_its_own_tests(
    kind: str, tests: int, tmp_path: Path, installed, pytester: pytest.Pytester, monkeypatch
) -> None:
    from mixbench.core import plugin_loader as plugins

    assert {k for k, _ in ROUND_TRIPS} == set(KINDS)
    project = write_plugin(f"my-{kind}", kind, tmp_path)
    installed(project)

    def listed() -> dict[str, str]:
        plugins.reset()
        result = CliRunner().invoke(app, ["list", f"{kind}s", "--json"])
        assert result.exit_code == 0, result.output
        return {e["name"]: e["plugin"] for e in json.loads(result.output)}

    assert f"my_{kind}" not in listed()  # the test suite's MIXBENCH_PLUGINS is empty
    monkeypatch.setenv("MIXBENCH_PLUGINS", f"my-{kind}")
    assert listed()[f"my_{kind}"] == f"my_{kind}"

    result = pytester.runpytest_inprocess(
        str(project), "-p", "no:cacheprovider", "-p", "no:benchmark"
    )
    result.assert_outcomes(passed=tests)
