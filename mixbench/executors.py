"""The executor contract, where plugin authors import it: ``Job``, ``Finished``, ``Executor``
and the helpers an executor plugin needs (``call_runner``, ``finished_from``,
``failure_row``), and the scheduler's pieces (``run_jobs``, ``can_start``, ``StopRequest``,
``Interrupted``).

The code lives in ``mixbench.runs.executors`` beside the scheduler that drives executors;
this module keeps the path executor plugins (the built-ins included) import from.
"""

from __future__ import annotations

from mixbench.runs.executors import (
    Executor,
    Finished,
    Interrupted,
    Job,
    StopRequest,
    call_runner,
    can_start,
    create_executor,
    failure_row,
    finished_from,
    run_job,
    run_jobs,
)

__all__ = [
    "Executor",
    "Finished",
    "Interrupted",
    "Job",
    "StopRequest",
    "call_runner",
    "can_start",
    "create_executor",
    "failure_row",
    "finished_from",
    "run_job",
    "run_jobs",
]
