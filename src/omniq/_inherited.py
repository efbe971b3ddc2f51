"""What a forked child must leave alone: objects it inherited from its parent.

After ``fork()`` a child shares its parent's sockets and file descriptors. Closing an
inherited database connection in the child would send the server its goodbye (a
PostgreSQL ``Terminate`` message) or release SQLite's state under the parent's feet,
breaking the parent's connection. So every store drops such objects in the child
without closing them, and they are kept here, referenced forever, so that their
finalizers never run either. Each store then opens connections of its own, lazily.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_ABANDONED: list[Any] = []
_LOCK = threading.Lock()


def abandon_after_fork(obj: Any) -> None:
    """Keep ``obj`` (inherited from the parent) alive and unused for this process's life."""
    if obj is not None:
        with _LOCK:
            _ABANDONED.append(obj)


def _reset_lock() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # the parent's other threads may have held it at fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)
