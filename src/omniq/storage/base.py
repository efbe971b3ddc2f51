"""The abstract storage contract: ``BaseStorage`` and ``AsyncBaseStorage``."""

from omniq._async.storage.base import AsyncBaseStorage
from omniq._sync.storage.base import BaseStorage

__all__ = ["AsyncBaseStorage", "BaseStorage"]
