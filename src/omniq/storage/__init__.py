"""Storage backends. Each module offers the blocking class and its ``Async`` twin."""

from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.file import AsyncFileStorage
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._async.storage.sqlite import AsyncSQLiteStorage
from omniq._sync.storage.base import BaseStorage
from omniq._sync.storage.file import FileStorage
from omniq._sync.storage.memory import MemoryStorage
from omniq._sync.storage.sqlite import SQLiteStorage

__all__ = [
    "AsyncBaseStorage",
    "AsyncFileStorage",
    "AsyncMemoryStorage",
    "AsyncSQLiteStorage",
    "BaseStorage",
    "FileStorage",
    "MemoryStorage",
    "SQLiteStorage",
]
