"""The executor contract, where plugin authors import it: ``Job``, ``Finished``, ``Executor``
and the helpers an executor plugin needs (``call_runner``, ``finished_from``,
``failure_row``).

The code lives in ``mixbench.runs.executors`` beside the scheduler that drives executors;
this module keeps the path executor plugins (the built-ins included) import from.
"""

from __future__ import annotations

from mixbench.runs.executors import (
    Executor,
    Finished,
    Job,
    call_runner,
    create_executor,
    failure_row,
    finished_from,
    run_job,
)

__all__ = [
    "Executor",
    "Finished",
    "Job",
    "call_runner",
    "create_executor",
    "failure_row",
    "finished_from",
    "run_job",
]
