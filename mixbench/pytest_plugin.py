"""The pytest plugin's author-facing helpers, where plugin packages import them
(``from mixbench.pytest_plugin import mixbench_conformance``).

The plugin itself (its fixtures and hooks, registered through the ``pytest11`` entry point)
is ``mixbench.authoring.pytest_plugin``; this module re-exports only what a test file
imports, so importing it registers no fixture twice.
"""

from __future__ import annotations

from mixbench.authoring.pytest_plugin import (
    BENCHMARK_MARKER,
    BenchmarkCase,
    ConformanceCase,
    conformance_cases,
    mixbench_conformance,
    plugins_env_value,
)

__all__ = [
    "BENCHMARK_MARKER",
    "BenchmarkCase",
    "ConformanceCase",
    "conformance_cases",
    "mixbench_conformance",
    "plugins_env_value",
]
