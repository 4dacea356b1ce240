"""mixbench: benchmark token mixers and optimizers in one MetaFormer shell.

The public surface is small and stable:

* ``hookimpl`` marks a plugin's hook implementations (see ``mixbench.hookspecs``);
* ``create_mixer``, ``create_optimizer``, ``create_model`` and ``create_task`` build
  registered things by name with their options validated;
* ``load_results`` reads run directories into a pandas DataFrame;
* ``FlopTally`` is how a mixer states its FLOPs (docs/conventions.md).

Everything that needs torch is imported lazily, so ``import mixbench`` (and the CLI's
``--help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "mixbench"
ENTRY_POINT_GROUP = "mixbench"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

if TYPE_CHECKING:  # pragma: no cover
    from mixbench.core.api import (
        create_block,
        create_mixer,
        create_model,
        create_optimizer,
        create_task,
    )
    from mixbench.core.plugin_loader import get_registry
    from mixbench.measure.flops import FlopTally
    from mixbench.report.results import load_results

_LAZY = {
    "create_mixer": "mixbench.core.api",
    "create_block": "mixbench.core.api",
    "create_optimizer": "mixbench.core.api",
    "create_model": "mixbench.core.api",
    "create_task": "mixbench.core.api",
    "FlopTally": "mixbench.measure.flops",
    "get_registry": "mixbench.core.plugin_loader",
    "load_results": "mixbench.report.results",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "FlopTally",
    "__version__",
    "create_block",
    "create_mixer",
    "create_model",
    "create_optimizer",
    "create_task",
    "get_registry",
    "hookimpl",
    "load_results",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mixbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
