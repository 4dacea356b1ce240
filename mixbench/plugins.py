"""Plugin loading, where plugin authors and their tests reach it (``register_plugin`` for a
plugin defined in a test, ``get_registry``, ``get_plugins``, ``discover``,
``import_string``). The loader lives in ``mixbench.core.plugin_loader``."""

from __future__ import annotations

from mixbench.core.plugin_loader import (
    ENV_VAR,
    PluginInfo,
    PluginSet,
    discover,
    get_plugins,
    get_registry,
    import_string,
    register_plugin,
    reset,
    unregister_plugin,
)

__all__ = [
    "ENV_VAR",
    "PluginInfo",
    "PluginSet",
    "discover",
    "get_plugins",
    "get_registry",
    "import_string",
    "register_plugin",
    "reset",
    "unregister_plugin",
]
