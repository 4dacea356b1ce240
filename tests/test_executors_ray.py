"""The ray executor on a local Ray instance, started once for this module (about 10 s).

Skipped, with the reason, where ray is not installed (it is the optional extra
``mixbench[ray]``), but failed under CI (``CI=true``), where the test extra installs it; the
error a user gets without it is tested without Ray.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ci import import_or_skip

from mixbench.errors import UsageError
from mixbench.runs.executors import Finished, Job, StopRequest, create_executor, run_jobs

HERE = Path(__file__).resolve().parent


def toy_runner(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Raise, crash the worker, hang, or return an ok row with where it ran."""
    config = payload["config"]
    action = config.get("action", "ok")
    if action == "raise":
        raise RuntimeError("this cell is broken")
    if action == "crash":
        os._exit(3)
    if action == "hang":
        import time

        time.sleep(60)
    row = {
        "kind": payload["kind"],
        "key": payload["key"],
        "status": "ok",
        "reason": None,
        "config": config,
        "metrics": {"pid": os.getpid(), "omp_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    return {"row": row, "curves": None}


def job(name: str, **config: Any) -> Job:
    timeout = config.pop("timeout", None)
    return Job(
        key=name,
        kind="train",
        config={"name": name, **config},
        label=name,
        runner="test_executors_ray:toy_runner",
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = import_or_skip("ray", "ray is not installed (pip install 'mixbench[ray]')")
    # Workers import this module's runners by name: put tests/ on their path.
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "MIXBENCH_PLUGINS": ""}},
    )
    yield ray
    ray.shutdown()


def _run(executor: Any, jobs: list[Job], max_parallel: int = 2) -> dict[str, Finished]:
    results: dict[str, Finished] = {}
    try:
        run_jobs(
            jobs,
            executor,
            max_parallel=max_parallel,
            stop=StopRequest(),
            on_finished=lambda f: results.__setitem__(f.job.key, f),
        )
    finally:
        executor.close(cancel=False)
    return results


def test_ray_executor_streams_rows_and_survives_a_raising_cell_and_a_dead_worker(
    local_ray: Any,
) -> None:
    executor = create_executor("ray", max_parallel=2, run_dir=None, options={})
    assert executor.cpus == 2 and executor.slots == 2
    jobs = [
        job("a"),
        job("b", threads=2),
        job("bad", action="raise"),
        job("dead", action="crash"),
        job("c"),
    ]
    results = _run(executor, jobs)
    assert set(results) == {j.key for j in jobs}
    assert results["bad"].row["status"] == "error"
    assert "this cell is broken" in results["bad"].row["reason"]
    assert results["dead"].row["status"] == "error"  # the worker died: WorkerCrashedError
    assert results["dead"].lost
    for key in ("a", "b", "c"):
        assert results[key].row["status"] == "ok"
        assert results[key].row["metrics"]["pid"] != os.getpid()
    # Ray pins each task's torch threads to what the cell reserved.
    assert results["a"].row["metrics"]["omp_threads"] == "1"
    assert results["b"].row["metrics"]["omp_threads"] == "2"
    assert local_ray.is_initialized()  # attached to the running instance: not shut down


def test_ray_executor_cancels_a_cell_past_its_timeout(local_ray: Any) -> None:
    executor = create_executor("ray", max_parallel=2, run_dir=None, options={})
    results = _run(executor, [job("slow", action="hang", timeout=1.0), job("fine")])
    assert results["slow"].row["status"] == "timeout"
    assert results["fine"].row["status"] == "ok"


def test_ray_executor_refuses_cells_no_node_can_hold(local_ray: Any) -> None:
    executor = create_executor("ray", max_parallel=1, run_dir=None, options={})
    with pytest.raises(UsageError, match="largest Ray node has 2"):
        executor.check([job("big", threads=16)])
    with pytest.raises(UsageError, match="no Ray node has a GPU"):
        executor.check([job("gpu", device="cuda")])
    executor.close(cancel=False)


def test_reservations() -> None:
    from mixbench_builtins.executors.ray import reservation

    assert reservation(job("x")) == {"num_cpus": 1.0}
    assert reservation(job("x", threads=4)) == {"num_cpus": 4.0}
    assert reservation(job("x", device="cuda:0", threads=2)) == {"num_cpus": 2.0, "num_gpus": 1.0}


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'mixbench\[ray\]'"):
        create_executor("ray", max_parallel=1, run_dir=None, options={})


def test_a_sweep_on_ray_runs_the_same_cells_as_the_other_executors(
    local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny sweep of test_sweep_run (12 real cells) through ``--executor ray``: the same
    keys as planned, hence as inline and subprocess give there."""
    from test_sweep_run import TINY, cli, keys_of

    from mixbench.sweep.sweep_file import load_sweep

    monkeypatch.setenv("MIXBENCH_CACHE_DIR", str(tmp_path / "cache"))
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(TINY)
    out = tmp_path / "runs"
    assert cli(str(sweep_file), "--executor", "ray", "--out", str(out), "--quiet") == 0
    (run_dir,) = out.iterdir()
    assert sorted(keys_of(run_dir)) == sorted(load_sweep(sweep_file).keys)
    assert local_ray.is_initialized()  # attached to the running instance, left running
