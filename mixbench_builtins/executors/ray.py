"""The ``ray`` executor: each cell is a Ray task, on this machine or across a cluster.

Optional (``pip install 'mixbench[ray]'``); ray is imported only when the executor is built.

* Resources: a cell reserves what it uses, so Ray never packs two cells onto the same
  threads or device: ``num_cpus`` = the cell's ``threads`` (1 when unset), plus
  ``num_gpus=1`` for a CUDA cell. Ray also sets ``OMP_NUM_THREADS`` in the task's worker to
  its CPU reservation, so torch uses exactly the cores reserved. (The sweep driver still
  runs timing cells one at a time: a reservation stops sharing of cores, not of memory
  bandwidth or caches.)
* Cluster: ``--ray-address`` (option ``address``) attaches to a running cluster (``auto``,
  ``HOST:PORT`` or ``ray://HOST:10001``); without it a local instance is started with
  ``num_cpus`` CPUs (default: the cores this process may use) and shut down at the end.
* Results: each task returns its row (and a training cell's curves) to the driver, which
  appends it to the run directory on the driver's machine as soon as ``ray.wait`` reports
  the task done; nothing is written on the workers.
* Failures: tasks are never retried (``max_retries=0``: a cell must not run twice). A task
  that raises, a worker that dies, a node that is lost or Ray's out-of-memory killer each
  make that cell a row with status ``error`` (``oom`` for the last) and the sweep goes on.
  A cell past its timeout is cancelled (its worker killed) and recorded as ``timeout``;
  the clock starts at submission, so time spent queued for resources counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import mixbench
from mixbench.errors import UsageError
from mixbench.executors import Finished, Job, call_runner, failure_row, finished_from

# Passed to the workers of a cluster this process starts or joins, so that a cell sees the
# same plugins there as here.
FORWARDED_ENV = ("MIXBENCH_PLUGINS",)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "the ray executor needs Ray, which is not installed: pip install 'mixbench[ray]'"
        ) from None
    return ray


def reservation(job: Job) -> dict[str, float]:
    """The Ray resources one cell reserves: its threads, and a whole GPU on CUDA."""
    resources: dict[str, float] = {"num_cpus": float(job.threads)}
    if job.device.startswith("cuda"):
        resources["num_gpus"] = 1.0
    return resources


def run_in_worker(runner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The body of every Ray task: run the cell with the job's runner."""
    return call_runner(runner, payload)


class RayExecutor:
    """Submits cells as Ray tasks and streams their rows back as they finish."""

    name = "ray"
    fresh_processes = True  # a fresh_process job's worker exits after it (max_calls=1)

    def __init__(
        self,
        max_parallel: int = 1,
        run_dir: str | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
    ) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,  # worker output would break the progress bar
                "logging_level": logging.WARNING,
                "runtime_env": {"env_vars": env_vars} if env_vars else None,
            }
            if address:
                ray.init(address=address, **options)
            else:
                from mixbench.runs.environment import usable_cores

                ray.init(num_cpus=num_cpus or usable_cores(), num_gpus=num_gpus, **options)
        self.where = address or ("local" if self._owns else "attached")
        # A local instance this executor started runs on this machine, so the sweep may
        # probe this machine for the cells; a cluster's nodes are other machines.
        self.local = self._owns and not address
        self._nodes = [n for n in ray.nodes() if n.get("Alive")]
        totals = ray.cluster_resources()
        self.cpus, self.gpus = int(totals.get("CPU", 0)), int(totals.get("GPU", 0))
        self.slots = max(1, self.cpus)
        self._task = ray.remote(run_in_worker)
        self._inflight: dict[Any, tuple[Job, float]] = {}
        self._done = self._failed = 0

    # -- optional protocol method: refuse what the cluster can never schedule -------------
    def check(self, jobs: Sequence[Job]) -> None:
        """Raise before anything runs if a cell reserves more than any one node has."""
        most_cpus = max((n["Resources"].get("CPU", 0) for n in self._nodes), default=0)
        most_gpus = max((n["Resources"].get("GPU", 0) for n in self._nodes), default=0)
        for job in jobs:
            need = reservation(job)
            if need["num_cpus"] > most_cpus:
                raise UsageError(
                    f"{job.label or job.key} reserves {need['num_cpus']:g} CPUs (threads) but the "
                    f"largest Ray node has {most_cpus:g}"
                )
            if need.get("num_gpus", 0) > most_gpus:
                raise UsageError(
                    f"{job.label or job.key} runs on {job.device} but no Ray node has a GPU"
                )

    def submit(self, job: Job) -> None:
        fresh = {"max_calls": 1} if job.fresh_process else {}
        ref = self._task.options(
            **reservation(job), **fresh, max_retries=0, name=f"mixbench {job.label or job.key}"
        ).remote(job.runner, job.payload())
        self._inflight[ref] = (job, time.monotonic())

    def wait(self, timeout: float) -> list[Finished]:
        if not self._inflight:
            time.sleep(min(timeout, 0.05))
            return []
        refs = list(self._inflight)
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:  # collect everything else that is already done, without waiting
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        finished = [self._collect(ref) for ref in ready]
        finished += self._expire()
        self._done += len(finished)
        self._failed += sum(f.row.get("status") != "ok" for f in finished)
        return finished

    def _collect(self, ref: Any) -> Finished:
        job, submitted = self._inflight.pop(ref)
        errors = self._ray.exceptions
        took = time.monotonic() - submitted

        def failed(status: str, reason: str, *, lost: bool) -> Finished:
            row = failure_row(job, status, reason, executor=self.name, duration_s=took)
            return Finished(job, row, lost=lost)

        try:
            return finished_from(job, self._ray.get(ref))
        except errors.RayTaskError as exc:  # the runner itself raised: the harness failed
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return failed("error", f"{type(cause).__name__}: {cause}", lost=False)
        except errors.OutOfMemoryError as exc:
            return failed(
                "oom", f"Ray's memory monitor killed the worker: {_first_line(exc)}", lost=False
            )
        except errors.RayError as exc:  # worker crashed, node died, object lost, cancelled
            return failed("error", f"{type(exc).__name__}: {_first_line(exc)}", lost=True)

    def _expire(self) -> list[Finished]:
        now, expired = time.monotonic(), []
        for ref, (job, submitted) in list(self._inflight.items()):
            if job.timeout and now - submitted > job.timeout:
                self._ray.cancel(ref, force=True)
                del self._inflight[ref]
                reason = f"no result within the {job.timeout:g} s timeout (cancelled)"
                row = failure_row(
                    job, "timeout", reason, executor=self.name, duration_s=now - submitted
                )
                expired.append(Finished(job, row))
        return expired

    def status(self) -> str:
        nodes = f"{len(self._nodes)} node{'s' if len(self._nodes) != 1 else ''}"
        return (
            f"ray @ {self.where} ({nodes}, {self.cpus} CPU, {self.gpus} GPU): "
            f"{len(self._inflight)} in flight, {self._done} done, {self._failed} not ok"
        )

    def close(self, *, cancel: bool) -> None:
        if cancel:
            for ref in list(self._inflight):
                with contextlib.suppress(Exception):  # finished already, or the cluster is gone
                    self._ray.cancel(ref, force=True)
            self._inflight.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@mixbench.hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(
        "ray",
        RayExecutor,
        description="Ray tasks on a local instance or a cluster (optional extra: ray)",
        isolation="process per task; CPU threads and GPUs reserved per cell",
    )
