"""In-memory storage: ``MemoryStorage`` and ``AsyncMemoryStorage``."""

from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._sync.storage.memory import MemoryStorage

__all__ = ["AsyncMemoryStorage", "MemoryStorage"]
