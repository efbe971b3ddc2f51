"""File storage: ``FileStorage`` (blocking) and ``AsyncFileStorage``, one JSON file per task."""

from omniq._async.storage.file import AsyncFileStorage
from omniq._sync.storage.file import FileStorage

__all__ = ["AsyncFileStorage", "FileStorage"]
