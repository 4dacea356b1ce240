"""mixbench's pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

Installed with mixbench, so a plugin package's tests can say

    from mixbench.testing import check_mixer

    def test_conformance(mixbench_registry):
        for name in mixbench_registry.names("mixer"):
            check_mixer(name)

``mixbench_registry`` is the registry as the installed plugins fill it. Nothing here is
imported unless a test asks for it, so the plugin costs other projects nothing.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def mixbench_registry() -> Any:
    """The registry of every installed (and permitted) mixbench plugin."""
    from mixbench.plugins import get_registry

    return get_registry()
