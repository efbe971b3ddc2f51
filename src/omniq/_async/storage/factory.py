"""Build the storage that ``Settings`` describe."""

from __future__ import annotations

from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.file import AsyncFileStorage
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._async.storage.sqlite import AsyncSQLiteStorage
from omniq.config import Settings


def storage_from_settings(settings: Settings) -> AsyncBaseStorage:
    """A new, unopened storage for ``settings.backend``."""
    if settings.backend == "sqlite":
        return AsyncSQLiteStorage(settings.sqlite_path, durability=settings.durability)
    if settings.backend == "file":
        return AsyncFileStorage(settings.base_dir, durability=settings.durability)
    if settings.backend == "memory":
        return AsyncMemoryStorage()
    if settings.backend == "postgres" and settings.dsn:
        # Imported here: psycopg is an optional extra, needed only by this backend
        # (without it, this import raises an ImportError that names the extra).
        from omniq._async.storage.postgres import AsyncPostgresStorage

        return AsyncPostgresStorage(settings.dsn, durability=settings.durability)
    raise ValueError(f"backend {settings.backend!r} is not available in this build of omniq")
