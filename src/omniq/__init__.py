"""omniq: a task queue with one async core and a generated blocking twin.

``AsyncOmniQ`` serves asyncio applications, ``OmniQ`` everything else; both
read and write the same stores (SQLite by default).
"""

from omniq._async.core import AsyncOmniQ
from omniq._async.queue import AsyncTaskQueue
from omniq._async.worker import AsyncWorkerPool
from omniq._sync.core import OmniQ
from omniq._sync.queue import TaskQueue
from omniq._sync.worker import WorkerPool
from omniq.config import Settings
from omniq.exceptions import (
    OmniQError,
    StorageError,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
)
from omniq.models import Task, TaskError, TaskStatus, create_task
from omniq.task_context import TaskContext, current_task
from omniq.tasks import task

__version__ = "0.2.0"

__all__ = [
    "AsyncOmniQ",
    "AsyncTaskQueue",
    "AsyncWorkerPool",
    "OmniQ",
    "OmniQError",
    "Settings",
    "StorageError",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskQueue",
    "TaskStatus",
    "TaskTimeout",
    "WorkerPool",
    "__version__",
    "create_task",
    "current_task",
    "task",
]
