"""The layout's rules, checked by reading the source (docs/architecture.md):

* the library is free of its command line: no module under ``mixbench/`` outside the CLI
  package imports typer or names a CLI module;
* the core names no built-in plugin: no code there (docstrings aside) names a mixer,
  optimizer, task or executor that mixbench's own plugins register;
* commands stay thin: no module of the CLI package is over 250 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Set
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mixbench"
CLI_PACKAGE = PACKAGE / "cli"
# `python -m mixbench` is the command line's entry point, as `mixbench` is.
ENTRY_POINTS = {PACKAGE / "__main__.py"}
MAX_COMMAND_LINES = 250


def library_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if CLI_PACKAGE not in path.parents and path not in ENTRY_POINTS
    )


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _strings(tree: ast.Module) -> Iterator[ast.Constant]:
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        is_string = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_string and id(node) not in docstrings:
            yield node


def cli_dependencies(source: str) -> list[str]:
    """Where ``source`` imports typer or names a module of the CLI package."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            if node.module == "mixbench":
                modules += [f"mixbench.{alias.name}" for alias in node.names]
        for module in modules:
            if module.split(".")[0] == "typer" or module.split(".")[:2] == ["mixbench", "cli"]:
                found.append(f"line {node.lineno}: imports {module}")
    for node in _strings(tree):
        if node.value.startswith("mixbench.cli"):
            found.append(f"line {node.lineno}: names {node.value!r}")
    return found


def named_plugins(source: str, names: Set[str]) -> list[str]:
    """Where ``source``'s code (not its docstrings) names one of ``names``: a string that
    is a name, or a comma-separated list of names (prose that happens to use the word is
    not a name)."""
    found = []
    for node in _strings(ast.parse(source)):
        parts = {part.strip() for part in node.value.split(",")}
        if all(part.isidentifier() for part in parts) and parts & names:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


@pytest.fixture(scope="module")
def builtin_names() -> set[str]:
    """Every name mixbench's own plugins register (mixers, optimizers, tasks, executors)."""
    from mixbench.core.plugin_loader import get_plugins
    from mixbench.core.registry import KINDS

    plugins = get_plugins()
    builtin = {name for name, info in plugins.infos.items() if info.builtin}
    return {
        entry.name
        for kind in KINDS
        for entry in plugins.registry.entries(kind)
        if entry.plugin in builtin
    }


def test_the_checks_catch_what_they_look_for() -> None:
    """Each check fails on a module that breaks its rule (so a pass means something)."""
    assert cli_dependencies("import typer\n")
    assert cli_dependencies("from mixbench.cli.train import train_command\n")
    assert cli_dependencies("from mixbench import cli\n")
    assert cli_dependencies('RUNNER = "mixbench.cli.bench:bench"\n')
    assert not cli_dependencies('"""Run by ``mixbench.cli.bench``."""\nimport json\n')
    names = {"adamw", "digits"}
    assert named_plugins('if optimizer == "adamw":\n    pass\n', names)
    assert named_plugins('DEFAULT = "adamw,digits"\n', names)
    assert not named_plugins('"""adamw is the default."""\n', names)
    assert not named_plugins('MESSAGE = "letters and digits only"\n', names)


def test_no_library_module_depends_on_the_cli() -> None:
    found = {
        str(path.relative_to(PACKAGE.parent)): problems
        for path in library_modules()
        if (problems := cli_dependencies(path.read_text(encoding="utf-8")))
    }
    assert not found


def test_no_library_code_names_a_builtin_plugin(builtin_names: set[str]) -> None:
    assert {"adamw", "digits", "subprocess", "attention"} <= builtin_names
    found = {
        str(path.relative_to(PACKAGE.parent)): problems
        for path in library_modules()
        if (problems := named_plugins(path.read_text(encoding="utf-8"), builtin_names))
    }
    assert not found


def test_command_modules_are_thin() -> None:
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in CLI_PACKAGE.glob("*.py")
    }
    assert "train.py" in sizes and "bench.py" in sizes
    assert {name: n for name, n in sizes.items() if n > MAX_COMMAND_LINES} == {}
