"""The sweep driver's rules (fairness, each cell once, stopping) and the inline and subprocess
executors, on toy runners defined here (importable by name in spawned workers)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import pytest

from mixbench.runs.executors import (
    Finished,
    Interrupted,
    Job,
    StopRequest,
    can_start,
    create_executor,
    failure_row,
    run_jobs,
)

HERE = __name__  # "test_executors": how workers import the runners below


# -- toy runners: the payload's config says what to do ----------------------------------------


def toy_runner(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Sleep, raise, hang or crash the worker, as the config asks; else an ok row."""
    config = payload["config"]
    action = config.get("action", "ok")
    if action == "raise":
        raise RuntimeError("this cell is broken")
    if action == "crash":
        os._exit(3)
    time.sleep(float(config.get("sleep", 0.0)) if action != "hang" else 60.0)
    row = {
        "kind": payload["kind"],
        "key": payload["key"],
        "status": "ok",
        "reason": None,
        "config": config,
        "metrics": {"pid": os.getpid()},
    }
    return {"row": row, "curves": {"loss": [1.0, 0.5]} if payload["kind"] == "train" else None}


def job(name: str, kind: str = "train", **config: Any) -> Job:
    return Job(
        key=name,
        kind=kind,
        config={"name": name, **config},
        label=name,
        runner=f"{HERE}:toy_runner",
        timeout=config.pop("timeout", None),
    )


# -- the driver, against a scripted executor ---------------------------------------------------


class ScriptedExecutor:
    """Finishes the oldest running job on each wait; records what ran side by side."""

    name = "scripted"

    def __init__(self, slots: int = 8, lose: frozenset[str] = frozenset()) -> None:
        self.slots = slots
        self.running: list[Job] = []
        self.together: list[list[str]] = []
        self.submitted: list[str] = []
        self.lose = lose

    def submit(self, job: Job) -> None:
        self.running.append(job)
        self.submitted.append(job.key)
        self.together.append([j.key for j in self.running])

    def wait(self, timeout: float) -> list[Finished]:
        if not self.running:
            return []
        done = self.running.pop(0)
        row = {"key": done.key, "status": "ok", "config": dict(done.config)}
        return [Finished(done, row, lost=done.key in self.lose)]

    def status(self) -> str:
        return f"{len(self.running)} running"

    def close(self, *, cancel: bool) -> None:
        self.running.clear()


def test_fairness_bench_cells_run_alone_and_train_cells_side_by_side() -> None:
    jobs = [
        job("t1"),
        job("t2"),
        job("b1", "bench"),
        job("t3"),
        job("t4"),
        job("t5"),
        job("b2", "bench"),
        job("b3", "bench"),
        job("t6"),
    ]
    executor = ScriptedExecutor()
    finished: list[str] = []
    left = run_jobs(
        jobs,
        executor,
        max_parallel=3,
        stop=StopRequest(),
        on_finished=lambda f: finished.append(f.job.key),
    )
    assert left == []
    assert sorted(finished) == sorted(j.key for j in jobs)  # every cell exactly once
    for together in executor.together:
        assert len(together) <= 3
        if any(key.startswith("b") for key in together):
            assert len(together) == 1, f"a timing cell shared the machine: {together}"
    assert max(len(t) for t in executor.together) == 3  # training cells did run in parallel
    assert executor.submitted == [j.key for j in jobs]  # in file order


def test_max_parallel_is_capped_by_the_executor_slots() -> None:
    executor = ScriptedExecutor(slots=2)
    run_jobs(
        [job(f"t{i}") for i in range(6)],
        executor,
        max_parallel=5,
        stop=StopRequest(),
        on_finished=lambda f: None,
    )
    assert max(len(t) for t in executor.together) == 2


def test_can_start_rules() -> None:
    bench, train = job("b", "bench"), job("t")
    assert can_start(bench, {}, 4)
    assert not can_start(bench, {"t": train}, 4)
    assert not can_start(train, {"b": bench}, 4)
    assert can_start(train, {"t0": job("t0")}, 2)
    assert not can_start(train, {"t0": job("t0"), "t1": job("t1")}, 2)


def test_after_a_stop_request_nothing_new_starts_and_in_flight_cells_finish() -> None:
    stop = StopRequest()
    executor = ScriptedExecutor()
    finished: list[str] = []

    def on_finished(done: Finished) -> None:
        finished.append(done.job.key)
        if not stop.requested:
            stop.request("SIGINT", abandon=False)  # Ctrl-C once, after the first row

    jobs = [job(f"t{i}") for i in range(5)]
    left = run_jobs(jobs, executor, max_parallel=2, stop=stop, on_finished=on_finished)
    assert finished == ["t0", "t1"]  # t1 was in flight: it finished and was recorded
    assert [j.key for j in left] == ["t2", "t3", "t4"]


def test_a_cell_lost_while_stopping_is_not_recorded() -> None:
    stop = StopRequest()
    stop.request("SIGINT", abandon=False)
    executor = ScriptedExecutor(lose=frozenset({"t0"}))
    executor.submit(job("t0"))  # in flight when the stop came
    finished: list[str] = []
    run_jobs(
        [], executor, max_parallel=1, stop=stop, on_finished=lambda f: finished.append(f.job.key)
    )
    assert finished == []  # its worker died of the stop: a resume must run it again


def test_a_duplicate_result_is_never_recorded_twice() -> None:
    class Twice(ScriptedExecutor):
        def wait(self, timeout: float) -> list[Finished]:
            got = super().wait(timeout)
            return got + got

    finished: list[str] = []
    run_jobs(
        [job("a"), job("b")],
        Twice(),
        max_parallel=1,
        stop=StopRequest(),
        on_finished=lambda f: finished.append(f.job.key),
    )
    assert finished == ["a", "b"]


def test_stop_request_abandons_on_second_signal_but_never_mid_write() -> None:
    stop = StopRequest()
    stop.request("SIGINT", abandon=False)
    assert stop.level == 1
    with pytest.raises(Interrupted), stop.writing():
        stop.request("SIGINT", abandon=False)  # held back until the row is written
        written = True
    assert written
    with pytest.raises(Interrupted):
        StopRequest().request("SIGTERM", abandon=True)


def test_signals_are_routed_to_the_stop_request() -> None:
    stop = StopRequest()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.level == 1 and stop.signal_name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is not stop._handle


def test_failure_row_is_a_store_row() -> None:
    from mixbench.runs.store import REQUIRED_FIELDS

    row = failure_row(job("x"), "error", "worker died", executor="test")
    assert all(name in row for name in REQUIRED_FIELDS)
    assert row["status"] == "error" and row["key"] == "x"


# -- real executors ----------------------------------------------------------------------------


def _run_all(executor: Any, jobs: list[Job], max_parallel: int = 1) -> dict[str, Finished]:
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


def test_inline_executor_turns_raise_and_timeout_into_rows() -> None:
    executor = create_executor("inline", max_parallel=4, run_dir=None, options={})
    assert executor.slots == 1
    results = _run_all(
        executor,
        [
            job("ok"),
            job("bad", action="raise"),
            job("slow", action="hang", timeout=0.3),
            job("after"),
        ],
    )
    assert results["ok"].row["status"] == "ok"
    assert results["ok"].curves == {"loss": [1.0, 0.5]}
    assert results["bad"].row["status"] == "error"
    assert "this cell is broken" in results["bad"].row["reason"]
    assert results["slow"].row["status"] == "timeout"
    assert results["after"].row["status"] == "ok"  # the sweep went on
    assert results["ok"].row["metrics"]["pid"] == os.getpid()


def test_subprocess_executor_isolates_crashes(tmp_path: Any) -> None:
    executor = create_executor("subprocess", max_parallel=1, run_dir=str(tmp_path), options={})
    jobs = [
        job("a"),
        job("b"),
        job("crash", action="crash"),
        job("bad", action="raise"),
        job("c"),
        job("slow", action="hang", timeout=1.0),
    ]
    results = _run_all(executor, jobs)
    assert set(results) == {j.key for j in jobs}
    assert results["crash"].row["status"] == "error"
    assert "code 3" in results["crash"].row["reason"]
    assert results["crash"].lost  # the worker died: not a status the cell's code returned
    assert results["bad"].row["status"] == "error" and "broken" in results["bad"].row["reason"]
    assert results["slow"].row["status"] == "timeout"
    pid = {k: results[k].row["metrics"]["pid"] for k in ("a", "b", "c")}
    assert pid["a"] == pid["b"] != os.getpid()  # one persistent worker, not this process
    assert pid["c"] != pid["a"]  # a fresh worker replaced the crashed one; the sweep went on
    assert (tmp_path / "worker.log").exists()


def test_unknown_executor_suggests() -> None:
    from mixbench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'inline'"):
        create_executor("inlin", max_parallel=1, run_dir=None, options={})
