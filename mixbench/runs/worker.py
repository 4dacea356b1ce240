"""Run cells isolated from each other and from the parent, in a persistent worker process.

Why a separate process: a cell that segfaults, is killed by the out-of-memory killer, or
hangs must become a row with a status, not the end of the run; and a cell's memory must
not be inflated by what earlier cells left in the allocator. Why a *persistent* one: torch
takes seconds to import, so the worker imports it once and then runs cells one by one,
and is replaced only when a cell kills or hangs it.

Start-up: workers come from a ``forkserver`` that has imported torch once (where the
platform has one; else ``spawn``), so a new worker costs a fork (~0.1 s), not a torch import
(~3 s or more on a loaded machine): process repeats (``mixbench bench --processes``) start
a fresh worker per measurement. The server forks from a state that has imported but run
nothing, never from the parent (which may hold threads or CUDA state); the parent's
environment is passed with each worker, as ``spawn`` would give it.

Protocol: the parent sends ``(function_path, kwargs)`` over a ``multiprocessing`` Pipe
and receives ``("ok", result)`` or ``("raise", message)``. ``IsolatedRunner.run(cell)``
runs a cell through its kind's runner (``mixbench.runs.cell_kinds``), so any kind of cell
runs isolated; ``call()`` runs any importable function (the hardware probes use it).

Plugins: the worker discovers entry-point plugins itself, as any process does, and also
imports every in-process plugin the parent registered with ``register_plugin`` from a
module (by module name), so tests and notebooks see the same mixers on both sides.

Output: the worker's stdout and stderr (profiler chatter, warnings) go to ``log_path`` when
given, else stdout is pointed at stderr, so ``--json`` output on the parent's stdout stays
clean.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mixbench.errors import MixbenchError
from mixbench.runs.cell_kinds import preloaded_modules
from mixbench.runs.rows import iso_time, row_skeleton

# Imported once, in the forkserver: torch, and what a cell's first FLOP count (torch._dynamo,
# seconds to import) and memory pass would otherwise import in every fresh worker; each
# kind of cell adds its own modules (``CellKind.preload``).
PRELOAD = [
    "torch",
    "torch._dynamo",
    "torch.utils.flop_counter",
    "torch.profiler",
    "mixbench.core.plugin_loader",
]
START_TIMEOUT_S = 180.0  # importing torch and the plugins on a loaded machine
POLL_S = 0.2


class WorkerError(MixbenchError):
    """The worker could not be started, or a ``call`` failed in it (exit code 1)."""


def _in_process_plugins() -> list[tuple[str, str]]:
    """(name, module) of plugins registered in this process from an importable module."""
    from mixbench.core.plugin_loader import get_plugins

    return [
        (name, info.module)
        for name, info in get_plugins().infos.items()
        if info.distribution is None and not info.builtin and info.status == "ok"
    ]


def _context() -> Any:
    """The forkserver context with torch preloaded where available, else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # no effect once the server runs
        context.set_forkserver_preload(PRELOAD + preloaded_modules())
        return context
    return multiprocessing.get_context("spawn")


def _child_main(
    conn: Any,
    log_path: str | None,
    plugins: list[tuple[str, str]],
    environment: dict[str, str] | None = None,
) -> None:
    """The worker's loop: receive a call, run it, send the answer; exit when the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if environment is not None:  # the parent's, now (the forkserver has its start-up one)
        os.environ.clear()
        os.environ.update(environment)
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    else:
        os.dup2(2, 1)
    import importlib

    from mixbench.core.plugin_loader import get_plugins, import_string, register_plugin

    problems = []
    get_plugins()
    for name, module_name in plugins:
        try:
            register_plugin(importlib.import_module(module_name), name)
        except Exception as exc:
            problems.append(f"plugin {name!r} ({module_name}): {type(exc).__name__}: {exc}")
    import torch  # noqa: F401  (paid once, before the first cell's timeout starts)

    conn.send(("ready", problems))
    while True:
        try:
            function_path, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = import_string(function_path)(**kwargs)
        except BaseException as exc:
            import traceback

            conn.send(("raise", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"))
        else:
            conn.send(("ok", result))


def describe_exit(exitcode: int | None) -> tuple[str, str]:
    """(status, reason) for a worker that died mid-cell."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            return "oom", f"worker killed by {name} (most likely the out-of-memory killer)"
        return "error", f"worker died with {name}"
    return "error", f"worker exited with code {exitcode}"


class IsolatedRunner:
    """Runs cells one at a time in a spawned worker; replaces the worker when a cell kills it.

    ``timeout_s`` bounds each cell (None: no bound). Use as a context manager, or call
    ``close()``.
    """

    def __init__(
        self,
        *,
        timeout_s: float | None = 600.0,
        log_path: Path | str | None = None,
        plugins: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.log_path = str(log_path) if log_path else None
        self.plugins = list(plugins) if plugins is not None else _in_process_plugins()
        self.plugin_problems: list[str] = []
        self.restarts = 0
        self._context = _context()
        self._process: Any = None
        self._conn: Any = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (if not running) and wait until it has imported torch."""
        if self._process is not None and self._process.is_alive():
            return
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_child_main,
            args=(child, self.log_path, self.plugins, dict(os.environ)),
            name="mixbench-worker",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        deadline = time.monotonic() + START_TIMEOUT_S
        while not parent.poll(POLL_S):
            if not process.is_alive() or time.monotonic() > deadline:
                self._kill()
                raise WorkerError(
                    f"the worker did not start ({describe_exit(process.exitcode)[1]})"
                )
        try:
            _, self.plugin_problems = parent.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            reason = describe_exit(process.exitcode)[1]
            self._kill()
            raise WorkerError(f"the worker did not start ({reason})") from None

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def kill(self) -> None:
        """Kill the worker process now; safe from another thread. A call blocked in
        ``exchange`` then returns ``("died", exitcode)`` and the next call starts a new
        worker."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def close(self) -> None:
        """Stop the worker: close the pipe (it exits on EOF), kill it if it lingers."""
        if self._process is None:
            return
        self._conn.close()
        self._process.join(timeout=5)
        self._conn = None
        self._kill()

    def __enter__(self) -> IsolatedRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work ------------------------------------------------------------------------
    def exchange(
        self, function_path: str, kwargs: Mapping[str, Any], timeout_s: float | None
    ) -> Any:
        """Send one call and wait; returns ("ok"|"raise", value) or ("timeout"|"died", ...)."""
        self.start()
        self._conn.send((function_path, dict(kwargs)))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                if self._conn.poll(POLL_S):
                    return self._conn.recv()
            except (EOFError, OSError):
                pass  # the worker died; its exit code says how
            if not self._process.is_alive():
                self._process.join(timeout=5)
                exitcode = self._process.exitcode
                self._kill()
                self.restarts += 1
                return "died", exitcode
            if deadline is not None and time.monotonic() > deadline:
                self._kill()
                self.restarts += 1
                return "timeout", timeout_s

    def call(
        self, function_path: str, kwargs: Mapping[str, Any], timeout_s: float | None = None
    ) -> Any:
        """Run ``function_path(**kwargs)`` in the worker and return its result."""
        outcome, value = self.exchange(function_path, kwargs, timeout_s)
        if outcome == "ok":
            return value
        if outcome == "timeout":
            raise WorkerError(f"{function_path} timed out after {value} s")
        if outcome == "died":
            raise WorkerError(f"{function_path}: {describe_exit(value)[1]}")
        raise WorkerError(f"{function_path} raised {value}")

    def run(self, cell: Mapping[str, Any]) -> dict[str, Any]:
        """The row of one cell; a timeout, a crash or a raise becomes the row's status."""
        started = time.time()
        payload = {**cell, "kind": cell.get("kind", "bench")}
        outcome, value = self.exchange(
            "mixbench.runs.executors:run_job", {"payload": payload}, self.timeout_s
        )
        if outcome == "ok":
            return dict(value["row"])
        if outcome == "timeout":
            status, reason = "timeout", f"no result within {value:g} s"
        elif outcome == "died":
            status, reason = describe_exit(value)
        else:
            status, reason = "error", str(value).splitlines()[0]
        row = row_skeleton(
            payload["kind"], cell.get("key"), cell["config"], cell.get("run_id"),
            started_at=iso_time(started),
        )  # fmt: skip
        row.update(status=status, reason=reason, duration_s=round(time.time() - started, 3))
        return row

    def iterate(self, cells: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        """Rows of ``cells`` in order, each as soon as it is measured."""
        for cell in cells:
            yield self.run(cell)
