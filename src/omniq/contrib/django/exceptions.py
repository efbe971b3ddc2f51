"""Why a Django task could not run, as the backend records it.

Each is an importable exception class, so a Django ``TaskError`` that names it resolves
(``result.errors[0].exception_class``).
"""

from __future__ import annotations

from omniq.exceptions import OmniQError, TaskFunctionError
from omniq.models import ErrorType


class TaskNotAllowed(TaskFunctionError):
    """The stored path does not name a Django task this process may run.

    A worker imports a Django task only from a module inside an installed app (or one
    that matches ``OPTIONS["task_modules"]``), and only if what it finds there is a
    ``django.tasks.Task`` whose own ``module_path`` is that path. Anyone who can write
    to the store can write any path, so nothing else is imported.
    """

    error_type = ErrorType.FORBIDDEN


class WorkerLost(OmniQError):
    """The worker running the task stopped before finishing it (its lease ran out)."""
