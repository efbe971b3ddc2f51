"""SQLite storage: ``SQLiteStorage`` (sqlite3) and ``AsyncSQLiteStorage`` (aiosqlite)."""

from omniq._async.storage.sqlite import AsyncSQLiteStorage
from omniq._sync.storage.sqlite import SQLiteStorage

__all__ = ["AsyncSQLiteStorage", "SQLiteStorage"]
