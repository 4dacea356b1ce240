"""Test-wide set-up: only mixbench's built-in plugins load, whatever else is installed."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

# Stray third-party plugins installed in the environment must never change the results.
os.environ["MIXBENCH_PLUGINS"] = ""


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the built-ins alone and leaves nothing registered behind."""
    from mixbench.core import plugin_loader as plugins

    monkeypatch.setenv("MIXBENCH_PLUGINS", "")
    plugins.reset()
    yield
    plugins.reset()


def write_dist(
    root: Path,
    dist: str,
    module: str,
    source: str,
    entry_points: dict[str, str],
    version: str = "1.0",
) -> Path:
    """Lay out an installed distribution (module + .dist-info with entry points) under
    ``root``, exactly as pip would, so importlib.metadata finds it once root is on sys.path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[mixbench]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def install_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Install throwaway plugin distributions for one test (sys.path + PYTHONPATH)."""
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    created: list[str] = []

    def install(dist: str, module: str, source: str, entry_points: dict[str, str]) -> Path:
        write_dist(site, dist, module, source, entry_points)
        created.append(module)
        import importlib

        importlib.invalidate_caches()
        return site

    yield install
    for module in created:
        sys.modules.pop(module, None)
