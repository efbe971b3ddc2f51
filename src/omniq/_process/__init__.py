"""The process executor: child processes with hard timeouts, crash containment, recycling.

Shared by both twins (it is blocking and thread-safe; the async twin awaits its futures
through :func:`omniq._concurrency.aresolve_future`). The parent keeps every store
connection, claim and lease; children only run task functions. See
:class:`~omniq._process.pool.ProcessPool`.
"""

from __future__ import annotations

from omniq._process.child import current_job
from omniq._process.children import ChildStartError, describe_exit
from omniq._process.jobs import RELEASED, Job, JobOutcome, JobResult, job_for_task
from omniq._process.pool import DEFAULT_KILL_GRACE, ProcessPool, default_start_method

__all__ = [
    "DEFAULT_KILL_GRACE",
    "RELEASED",
    "ChildStartError",
    "Job",
    "JobOutcome",
    "JobResult",
    "ProcessPool",
    "current_job",
    "default_start_method",
    "describe_exit",
    "job_for_task",
]
