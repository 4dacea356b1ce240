"""``mixbench new-plugin``: write a complete, installable plugin package from templates.

The generated package is meant to work before its author changes a line: ``pip install -e``
makes its mixer, optimizer or task appear in ``mixbench list``, and ``pytest`` runs the
conformance kit over it. The example implementations are small but real (a depthwise
convolution mixer, the Signum optimizer, a synthetic majority-token task), so the author edits
working code instead of filling in blanks.

Naming, for ``mixbench new-plugin my-mixer``: the directory and distribution are ``my-mixer``,
the import package and the registered name are ``my_mixer``, and the entry point
``my_mixer = "my_mixer.mixer"`` sits in the ``mixbench`` group.

This module imports neither torch nor any plugin; the checks that need the registry import it
when they run.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import mixbench
from mixbench.errors import UsageError

KINDS = ("mixer", "optimizer", "task")
_DIST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin package needs, derived from the one the user typed."""

    dist: str  # distribution and directory: my-mixer
    package: str  # import package, entry-point name and registered name: my_mixer
    class_name: str  # MyMixer

    @property
    def registered(self) -> str:
        return self.package


def plugin_names(name: str) -> PluginNames:
    """Derive the names, or raise ``UsageError`` saying why ``name`` cannot be a package."""
    if not name:
        raise UsageError("the plugin name is empty")
    if not _DIST_NAME.match(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        why = (
            f"it contains {', '.join(map(repr, bad))}"
            if bad
            else "it starts or ends with '-', '_' or '.'"
        )
        raise UsageError(
            f"{name!r} is not a valid package name: {why}. A package name (PEP 508) is "
            "ASCII letters, digits, '-', '_' and '.', starting and ending with a letter or "
            "digit (for example my-mixer)"
        )
    package = re.sub(r"[-_.]+", "_", name).lower()
    if package[0].isdigit():
        raise UsageError(
            f"{name!r} cannot be a plugin name: its import package {package!r} would start "
            "with a digit, which Python cannot import (try a name starting with a letter)"
        )
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise UsageError(f"{name!r} cannot be a plugin name: {package!r} is a Python keyword")
    if package in sys.stdlib_module_names:
        raise UsageError(
            f"{name!r} cannot be a plugin name: its import package {package!r} would shadow "
            "the standard library module of that name"
        )
    if importlib.util.find_spec(package) is not None:
        raise UsageError(
            f"{name!r} cannot be a plugin name: a module named {package!r} is already "
            "importable here, and two packages with one import name overwrite each other "
            "(choose another name, or uninstall the existing package)"
        )
    class_name = "".join(part.capitalize() for part in package.split("_"))
    return PluginNames(dist=name, package=package, class_name=class_name)


def check_name_is_free(kind: str, names: PluginNames) -> None:
    """Refuse a registered name that an installed plugin already uses: two plugins
    registering one name make it unusable (mixbench replaces nothing silently)."""
    from mixbench.plugins import get_registry

    registry = get_registry()
    if (kind, names.registered) in registry:
        entry = registry.get(kind, names.registered)
        raise UsageError(
            f"{kind} {names.registered!r} is already registered by plugin {entry.plugin!r}; "
            "choose another plugin name"
        )


def _dependency_bound() -> str:
    """``mixbench>=0.1,<0.2`` for mixbench 0.1.x: before 1.0 a minor release may change the
    plugin API, after it only a major one (docs/publishing.md)."""
    major, minor = (int(part) for part in mixbench.__version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"mixbench>={major}.{minor},<{upper}"


def render(kind: str, names: PluginNames) -> dict[str, str]:
    """Relative path -> file content of a new plugin package of ``kind``."""
    if kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    values = {
        "dist": names.dist,
        "package": names.package,
        "name": names.registered,
        "class_name": names.class_name,
        "kind": kind,
        "requirement": _dependency_bound(),
        "summary": SUMMARIES[kind],
        "next_command": next_command(kind, names.registered),
    }
    files = {
        "pyproject.toml": "package/pyproject.toml.tmpl",
        "README.md": "package/README.md.tmpl",
        ".gitignore": "package/gitignore.tmpl",
        f"src/{names.package}/__init__.py": "package/__init__.py.tmpl",
        f"src/{names.package}/{kind}.py": f"{kind}/{kind}.py.tmpl",
        f"tests/test_{names.package}.py": f"{kind}/test_plugin.py.tmpl",
    }
    return {path: Template(_template(name)).substitute(values) for path, name in files.items()}


def _template(name: str) -> str:
    """One template file, shipped as package data under ``mixbench/authoring/templates``
    (``package/`` for what every plugin gets, one directory per kind for its code and
    tests). Placeholders are string.Template's: $dist, $package, $name, $class_name, $kind,
    $requirement, $summary, $next_command; the generated code passes ``ruff check`` and the
    conformance kit."""
    return (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")


def write_plugin(name: str, kind: str = "mixer", parent: Path | str = ".") -> Path:
    """Write the package ``parent/name`` and return its path.

    Refuses to touch an existing path; a failure half-way removes what it wrote, so a retry
    starts clean.
    """
    names = plugin_names(name)
    if kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    target = Path(parent) / names.dist
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; refusing to overwrite it")
    check_name_is_free(kind, names)
    files = render(kind, names)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.mkdir()
    except FileExistsError:
        raise UsageError(f"{target} already exists; refusing to overwrite it") from None
    try:
        for relative, content in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


SUMMARIES = {
    "mixer": "a token mixer",
    "optimizer": "an optimizer",
    "task": "a training task",
}


def next_command(kind: str, registered: str) -> str:
    """The command that tries a new plugin of ``kind`` out (its README's and
    ``mixbench new-plugin``'s last step)."""
    text = _template(f"{kind}/next_command.tmpl").strip()
    return Template(text).substitute(name=registered)
