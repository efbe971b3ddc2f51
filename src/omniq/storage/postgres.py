"""PostgreSQL storage: ``PostgresStorage`` (psycopg ``Connection``) and ``AsyncPostgresStorage``.

Needs the optional extra: ``pip install "omniq[postgres]"``; importing this module
without it raises an ``ImportError`` that says so.
"""

from omniq._async.storage.postgres import AsyncPostgresStorage
from omniq._sync.storage.postgres import PostgresStorage

__all__ = ["AsyncPostgresStorage", "PostgresStorage"]
