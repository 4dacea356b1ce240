"""Finding, loading and isolating plugins.

Plugins are modules named by entry points in the ``mixbench`` group; mixbench's own built-ins
(``plugins/`` in the source tree, importable as ``mixbench_builtins``) are found the same way.
Like flake8's plugin finder, one plugin that fails to import or raises in a hook is recorded
with its error and left out; every other plugin keeps working.

``MIXBENCH_PLUGINS`` chooses which *external* plugins load: unset loads all of them, an empty
value loads the built-ins only, and a comma-separated list loads just the named ones (by
entry-point or distribution name). The built-ins always load.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from mixbench import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from mixbench.core.registry import KINDS, Entry, Registry

ENV_VAR = "MIXBENCH_PLUGINS"
BUILTIN_DISTRIBUTION = "mixbench"
_HOOKS = {f"register_{kind}s": kind for kind in KINDS}


@dataclass
class PluginInfo:
    """What ``mixbench plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    builtin: bool
    status: str = "ok"  # ok | failed | disabled
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "hooks": list(self.hooks),
            "registered": {k: list(v) for k, v in self.registered.items()},
        }


class PluginSet:
    """A plugin manager, the plugins it knows, and the registry their hooks filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registry: Registry | None = None

    # -- loading ---------------------------------------------------------------------
    def add(self, plugin: object, info: PluginInfo) -> None:
        """Register an imported plugin object (a module or any object with hookimpls)."""
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # a malformed hookimpl (wrong argument names, ...)
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            info.hooks = sorted(
                impl.name for impl in self.pm.get_hookcallers(plugin) or [] if impl.name
            )
        self.infos[info.name] = info
        self._registry = None

    def remove(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.infos.pop(name, None)
        self._registry = None

    # -- registry --------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        registry = Registry()
        for info in self.infos.values():
            info.registered = {}
        for hook_name, kind in _HOOKS.items():
            caller = getattr(self.pm.hook, hook_name)
            # Call each plugin's implementation on its own, so one that raises is reported
            # and dropped without taking the others down (pluggy would stop at the first).
            for impl in reversed(caller.get_hookimpls()):
                owner = self.infos.get(impl.plugin_name)
                if owner is None or owner.status != "ok":
                    continue
                info = owner
                collected: list[Entry] = []
                try:
                    impl.function(register=_collector(kind, impl.plugin_name, collected))
                except Exception as exc:
                    info.status = "failed"
                    info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    continue
                for entry in collected:
                    registry.add(entry)
                    info.registered.setdefault(kind, []).append(entry.name)
        return registry

    def add_commands(self, app: Any) -> None:
        """Let plugins add sub-commands; a plugin whose hook raises is reported."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.infos.get(impl.plugin_name)
            if info is None or info.status != "ok":
                continue
            try:
                impl.function(app=app)
            except Exception as exc:
                info.status = "failed"
                info.error = f"register_commands raised {type(exc).__name__}: {exc}"


def _collector(kind: str, plugin: str, out: list[Entry]) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        complexity: str = "",
        **meta: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"{kind} {name!r}: factory {factory!r} is not callable")
        if "default_for" in meta:
            meta["default_for"] = _uses(meta["default_for"], f"plugin {plugin!r}, {kind} {name!r}")
        out.append(Entry(kind, name, factory, plugin, description, complexity, dict(meta)))

    register.__doc__ = f"Register a {kind}: register(name, factory, *, description='', **metadata)."
    return register


def _uses(value: Any, where: str) -> tuple[str, ...]:
    """``default_for`` as a tuple of uses: a bare string is one use (``"train"``), so that
    ``"train" in uses`` compares whole names, never a substring."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(use, str) for use in value):
        return tuple(value)
    raise TypeError(
        f"{where}: default_for must be a use or a tuple of uses (e.g. ('train',)), got {value!r}"
    )


def _allowed_externals() -> set[str] | None:
    """None means every external plugin; an empty set means none."""
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def discover() -> PluginSet:
    """Load every permitted entry-point plugin into a new PluginSet."""
    plugins = PluginSet()
    allowed = _allowed_externals()
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        builtin = dist_name is not None and dist_name.lower() == BUILTIN_DISTRIBUTION
        name = ep.name if builtin or ep.name not in seen else f"{dist_name}:{ep.name}"
        seen.add(name)
        info = PluginInfo(
            name=name,
            module=ep.value,
            distribution=dist_name,
            version=dist.version if dist is not None else None,
            builtin=builtin,
        )
        if not builtin and allowed is not None and not ({ep.name, dist_name} & allowed):
            info.status = "disabled"
            info.error = f"not listed in {ENV_VAR}"
            plugins.infos[name] = info
            continue
        try:
            module = ep.load()
        except BaseException as exc:  # SystemExit and friends from a broken plugin too
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.status = "failed"
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            info.hooks = []
            plugins.infos[name] = info
            _debug_traceback()
            continue
        plugins.add(module, info)
    return plugins


def _debug_traceback() -> None:
    if os.environ.get("MIXBENCH_DEBUG"):
        traceback.print_exc()


_CURRENT: PluginSet | None = None


def get_plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = discover()
    return _CURRENT


def get_registry() -> Registry:
    """The registry of the process-wide plugin set."""
    return get_plugins().registry


def register_plugin(plugin: object, name: str, *, version: str | None = None) -> None:
    """Register an in-process plugin (a module or object with hookimpls), as tests do."""
    module = getattr(plugin, "__name__", type(plugin).__name__)
    get_plugins().add(
        plugin,
        PluginInfo(name=name, module=module, distribution=None, version=version, builtin=False),
    )


def unregister_plugin(name: str) -> None:
    get_plugins().remove(name)


def reset() -> None:
    """Forget the loaded plugins; the next use discovers them again."""
    global _CURRENT
    _CURRENT = None


def import_string(path: str) -> Any:
    """``package.module:attr`` -> the attribute."""
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module
