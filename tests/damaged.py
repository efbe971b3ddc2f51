"""Stored task records with damage a store can hold but omniq never writes.

Tests add them with ``storage.add`` to check that one damaged record is failed
alone, listed and shown, and never breaks a worker, ``list`` or ``status``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from omniq.records import TaskRecord

# json.loads recurses once per level: this raises RecursionError when decoded.
DEEP_PAYLOAD = "[" * 100_000 + "]" * 100_000
# One day past datetime.max: no datetime can hold it.
YEAR_10000 = dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc).timestamp() + 86_400


def record(**changes: Any) -> TaskRecord:
    """A stored, due pending task for ``task_functions.add(1, 2)``, with ``changes``."""
    now = time.time()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "func_path": "task_functions.add",
        "payload": '{"args":[1,2],"kwargs":{}}',
        "status": "pending",
        "attempts": 0,
        "max_retries": 3,
        "eta": now - 1,
        "interval": None,
        "timeout": None,
        "result": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }
    values.update(changes)
    return TaskRecord(**values)
