"""The task queue engine, in both twins: ``AsyncTaskQueue`` and ``TaskQueue``."""

from omniq._async.queue import AsyncTaskQueue
from omniq._sync.queue import TaskQueue

__all__ = ["AsyncTaskQueue", "TaskQueue"]
