"""Lifecycle hooks of worker pools, shared by both twins.

``on_worker_start`` and ``on_worker_stop`` run once per pool, in its process (set up
Django, open a connection pool); ``before_task(task)`` and ``after_task(task,
outcome)`` run around every execution (close stale database connections, as Celery
and djhuey do). Register them on a facade (every pool it hands out runs them) or on
one pool; each registration method returns the function, so it works as a
decorator. A hook may be a plain or a coroutine function.

Where they run: in the blocking twin a task's hooks run on the task's own thread,
right before and after it; in the async twin on the event loop. A ``before_task``
that raises fails that task with a ``TaskError`` of type ``hook`` (retried as any
failure); an ``after_task`` that raises is logged and changes nothing; an
``on_worker_start`` that raises stops the pool from starting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
STAGES = ("worker_start", "worker_stop", "before_task", "after_task")


class Hooks:
    """The hooks of a facade or a pool; a pool's also runs its facade's (``parent``) first."""

    def __init__(self, parent: Hooks | None = None) -> None:
        self.parent = parent
        self._hooks: dict[str, list[Callable[..., Any]]] = {stage: [] for stage in STAGES}

    def __repr__(self) -> str:
        counts = {stage: len(list(self.of(stage))) for stage in STAGES}
        return f"Hooks({counts})"

    def _add(self, stage: str, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"a {stage} hook must be callable, got {fn!r}")
        self._hooks[stage].append(fn)
        return fn

    def on_worker_start(self, fn: F) -> F:
        """Run ``fn()`` once when a pool starts, before it claims anything."""
        return self._add("worker_start", fn)

    def on_worker_stop(self, fn: F) -> F:
        """Run ``fn()`` once when a pool stops, after its last task."""
        return self._add("worker_stop", fn)

    def before_task(self, fn: F) -> F:
        """Run ``fn(task)`` right before every execution."""
        return self._add("before_task", fn)

    def after_task(self, fn: F) -> F:
        """Run ``fn(task, outcome)`` right after every execution (``outcome.error`` is
        the ``TaskError`` of a failed one, ``outcome.result`` the result otherwise)."""
        return self._add("after_task", fn)

    def of(self, stage: str) -> Iterator[Callable[..., Any]]:
        """The hooks of ``stage``: the parent's first, then this object's own."""
        if self.parent is not None:
            yield from self.parent.of(stage)
        yield from self._hooks[stage]

    def snapshot(self) -> dict[str, tuple[Callable[..., Any], ...]]:
        """The hooks of every stage as they are now (a pool takes one when it starts)."""
        return {stage: tuple(self.of(stage)) for stage in STAGES}

    def has(self, stage: str) -> bool:
        """Whether any hook of ``stage`` is registered (here or in the parent)."""
        return any(True for _ in self.of(stage))
