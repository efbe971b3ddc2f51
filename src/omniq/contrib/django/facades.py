"""One blocking ``OmniQ`` facade per store and process, shared by every backend instance.

Django makes a backend instance per ``TASKS`` alias *and per thread* (``task_backends``
keeps them in a thread-local), so a threaded server would otherwise open a store
connection in each thread and never close it. Instances with equal ``Settings`` share
one facade here instead; each facade opens its store on first use and is closed at
exit. Facades are fork-safe (a child of ``gunicorn --preload`` reopens what it needs).
"""

from __future__ import annotations

import atexit
import os
import threading

from omniq import OmniQ, Settings

_lock = threading.Lock()
_facades: dict[Settings, OmniQ] = {}


def facade_for(settings: Settings) -> OmniQ:
    """The process's facade on the store ``settings`` describe (made on first call)."""
    with _lock:
        facade = _facades.get(settings)
        if facade is None:
            facade = _facades[settings] = OmniQ(settings)
        return facade


def close_all() -> None:
    """Close every facade made here (they reopen on next use); runs at exit."""
    with _lock:
        facades = list(_facades.values())
        _facades.clear()
    for facade in facades:
        facade.close()


def _after_fork_in_child() -> None:
    """A fork while another thread held the lock must not leave the child's lock held."""
    global _lock
    _lock = threading.Lock()


atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
