"""The hooks a mixbench plugin may implement.

Each ``register_*`` hook receives a ``register`` callback and calls it once per thing it
provides; the callback records which plugin registered what, so a clash of names can name
both plugins. A plugin implements any subset of these hooks with ``@mixbench.hookimpl``.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("mixbench")


@hookspec
def register_mixers(register: Any) -> None:
    """Register token mixers.

    ``register(name, factory, *, description="", complexity="", **metadata)``.
    ``factory(dim: int, grid: tuple[int, ...], **options) -> torch.nn.Module`` maps
    (B, N, dim) -> (B, N, dim) with N = prod(grid). A factory whose signature accepts
    ``index`` receives the block's position within its stage. Options are keyword
    arguments with defaults; they are validated against the signature.
    """


@hookspec
def register_optimizers(register: Any) -> None:
    """Register optimizers.

    ``register(name, factory, *, description="", **metadata)``.
    ``factory(params, lr: float, **options) -> torch.optim.Optimizer``. Training always
    calls ``optimizer.step(closure)``; the closure zeroes gradients, runs forward and
    backward, and returns the loss, so optimizers that evaluate the loss more than once
    (SAM) need no special case.
    """


@hookspec
def register_tasks(register: Any) -> None:
    """Register training tasks.

    ``register(name, factory, *, description="", **metadata)``.
    ``factory(seed: int, **options) -> mixbench.tasks.TaskData``: the whole train and
    validation split as tensors plus the input description the shell needs (see
    ``mixbench.tasks``). The same seed must give the same data.
    """


@hookspec
def register_executors(register: Any) -> None:
    """Register sweep executors.

    ``register(name, factory, *, description="", **metadata)``.
    ``factory(max_parallel=N, run_dir=PATH, **options) -> mixbench.runs.executors.Executor``:
    an object with ``name``, ``slots``, ``submit(job)``, ``wait(timeout) -> list[Finished]``,
    ``status() -> str`` and ``close(cancel=...)`` (optionally ``check(jobs)`` to refuse
    cells it cannot run before the sweep starts). See ``mixbench.runs.executors``.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``mixbench`` Typer application ``app``.

    Plugin commands are loaded when the command line names a command that the core does
    not have, so that ``mixbench --help`` never pays for importing plugins (and torch).
    """
