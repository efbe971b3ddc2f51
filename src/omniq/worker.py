"""Worker pools, in both twins: ``AsyncWorkerPool`` (asyncio) and ``WorkerPool`` (threads)."""

from omniq._async.worker import AsyncWorkerPool
from omniq._sync.worker import WorkerPool

__all__ = ["AsyncWorkerPool", "WorkerPool"]
