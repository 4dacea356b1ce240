"""Isolation: cells run in a persistent spawned worker; a cell that raises, crashes the
worker or hangs becomes a row with a status, and the next cell runs in a fresh worker."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from mixbench.core.plugin_loader import register_plugin
from mixbench.runs.worker import IsolatedRunner, describe_exit


def _faulty_plugin() -> Any:
    import test_bench_cell  # the throwaway plugin module; the worker imports it by name

    register_plugin(test_bench_cell, "faulty-tests")
    return test_bench_cell


def test_failures_are_rows_and_the_run_goes_on(tmp_path: Any) -> None:
    """One worker for the whole story (each start costs a torch import): rows in order, a
    probe call, a raise, a crash, a fresh worker, and finally a hang cut by the timeout."""
    plugin = _faulty_plugin()

    def faulty(failure: str) -> dict[str, Any]:
        return plugin.cell(mixer="faulty", mixer_options={"failure": failure})

    log = tmp_path / "worker.log"
    with IsolatedRunner(timeout_s=120, log_path=log) as runner:
        rows = list(runner.iterate([plugin.cell(), plugin.cell(mixer="identity")]))
        assert [r["config"]["mixer"] for r in rows] == ["pooling", "identity"]
        assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
        probe = runner.call("mixbench.measure.probes:run_probes", {"threads": 1, "quick": True})
        assert probe["matmul_gflops"] > 0

        raised = runner.run(faulty("raise"))
        assert (raised["status"], runner.restarts) == ("error", 0)  # caught in the worker

        crashed = runner.run(faulty("segv"))
        assert crashed["status"] == "error"
        assert "SIGSEGV" in crashed["reason"]
        assert crashed["config"]["mixer"] == "faulty" and crashed["key"] == "k"
        assert runner.restarts == 1

        after_crash = runner.run(faulty("none"))
        assert after_crash["status"] == "ok", after_crash["reason"]

        runner.timeout_s = 3
        hung = runner.run(faulty("hang"))
        assert hung["status"] == "timeout"
        assert "3 s" in hung["reason"]
        assert runner.restarts == 2
    assert log.exists()  # the worker's chatter went to its log, not to our stdout


@pytest.mark.parametrize(
    ("exitcode", "status", "words"),
    [
        (-signal.SIGKILL, "oom", "SIGKILL"),
        (-signal.SIGSEGV, "error", "SIGSEGV"),
        (3, "error", "code 3"),
    ],
)
def test_describe_exit(exitcode: int, status: str, words: str) -> None:
    got_status, reason = describe_exit(exitcode)
    assert got_status == status and words in reason
