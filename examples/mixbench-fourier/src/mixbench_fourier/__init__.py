"""mixbench-fourier: an FNet Fourier token mixer and the Lion optimizer as a mixbench plugin.

A worked example of an external plugin package: each module registers one thing through
mixbench's public hooks and is named by its own entry point in ``pyproject.toml``
(``fourier`` and ``lion`` in the ``mixbench`` group). See docs/tutorial.md in the mixbench
repository for how it was built, step by step.
"""

__version__ = "0.1.0"
