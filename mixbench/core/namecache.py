"""Registered names without importing the plugins: a small cache of the registry.

Importing the plugins means importing torch (about 3 s here), which a sweep file's typo
should not cost. The cache (``names.json`` in the user cache directory, or
``$MIXBENCH_CACHE_DIR``) holds each kind's registered names and their option keys, with a
fingerprint of everything the registry depends on: mixbench's version, ``MIXBENCH_PLUGINS``,
every entry point (name, target, distribution, version) and the size and mtime of each
entry-point module's source files (found without importing them). A changed plugin changes
the fingerprint, and the cache is rebuilt from the registry on next use.

A cache written while some plugin failed to load is not trusted to say a name is missing
(installing the plugin's dependency changes no file it fingerprints): `NameCheck` then asks
the registry itself. In a process that has already loaded the plugins the live registry is
used directly, so plugins registered in-process (tests, notebooks) are seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixbench.errors import suggest

CACHE_ENV = "MIXBENCH_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mixbench"


def _module_files(dotted: str) -> list[Path]:
    """The source files that define an entry-point module, found without importing it:
    the module's file and, inside a package, its sibling modules (a plugin module often
    imports helpers from beside it)."""
    import importlib.machinery
    import importlib.util

    parts = dotted.split(":")[0].split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for depth in range(1, len(parts)):
            if spec is None or not spec.submodule_search_locations:
                return []
            name = ".".join(parts[: depth + 1])
            spec = importlib.machinery.PathFinder.find_spec(
                name, list(spec.submodule_search_locations)
            )
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not os.path.exists(spec.origin):
        return []
    origin = Path(spec.origin)
    return sorted(origin.parent.glob("*.py")) if len(parts) > 1 else [origin]


def _fingerprint() -> str:
    """What the registry's contents depend on: entry points, their files, the env filter."""
    from importlib import metadata

    import mixbench

    parts: list[Any] = [mixbench.__version__, os.environ.get("MIXBENCH_PLUGINS")]
    for ep in sorted(metadata.entry_points(group=mixbench.ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        parts.append(
            [
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist else None,
                dist.version if dist else None,
            ]
        )
        for path in _module_files(ep.value):
            stat = path.stat()
            parts.append([str(path), stat.st_mtime_ns, stat.st_size])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


@dataclass
class KnownNames:
    """Registered names and their option keys, per kind: {kind: {name: (options, **kw?)}}."""

    entries: dict[str, dict[str, tuple[list[str], bool]]]
    complete: bool  # every plugin loaded: a name missing here is really missing

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries.get(kind, {}))


def _from_registry() -> KnownNames:
    from mixbench.core.plugin_loader import get_plugins
    from mixbench.core.registry import KINDS

    plugins = get_plugins()
    registry = plugins.registry
    entries = {
        kind: {e.name: (sorted(e.options), e.signature[1]) for e in registry.entries(kind)}
        for kind in KINDS
    }
    complete = all(info.status != "failed" for info in plugins.infos.values())
    return KnownNames(entries, complete)


def known_names(*, cached: bool = True) -> KnownNames:
    """Registered names: the live registry when plugins are already loaded in this process,
    else the cache when it matches the installed plugins, else the registry (cached after)."""
    from mixbench.core import plugin_loader as plugins

    if plugins._CURRENT is not None or not cached:
        return _from_registry()
    path = cache_dir() / "names.json"
    fingerprint = _fingerprint()
    try:
        data = json.loads(path.read_text())
        if data.get("fingerprint") == fingerprint:
            entries = {
                k: {n: (list(o), bool(v)) for n, (o, v) in e.items()}
                for k, e in data["entries"].items()
            }
            return KnownNames(entries, bool(data["complete"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    known = _from_registry()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".names.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {"fingerprint": fingerprint, "complete": known.complete, "entries": known.entries}
            )
        )
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: no cache, just slower
    return known


class NameCheck:
    """Checks names against the cached registry, consulting the live one only when the
    cache may be incomplete (a plugin failed to load when it was written)."""

    def __init__(self, known: KnownNames) -> None:
        self.known = known

    def entry(self, kind: str, name: str) -> tuple[list[str], bool] | None:
        found = self.known.entries.get(kind, {}).get(name)
        if found is None and not self.known.complete:
            self.known = known_names(cached=False)
            self.known.complete = True  # asked the registry itself: no further retries
            found = self.known.entries.get(kind, {}).get(name)
        return found

    def require(self, kind: str, name: str) -> tuple[list[str], bool]:
        found = self.entry(kind, name)
        if found is None:
            registered = self.known.names(kind)
            close = suggest(name, registered)
            hint = (" Did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
            raise ValueError(
                f"unknown {kind} {name!r}.{hint} Registered: {', '.join(registered) or '(none)'}."
            )
        return found
