"""The allow-list on the child's side of a worker pool's process executor.

The worker checks every task's path before it sends the job (``AllowList.check``,
no import) and says in the job which rule let it through (``context["allowed_by"]``):
a task declared in the worker, a path the worker's facade enqueued, or a pattern of
``Settings.task_modules``. The child then imports the function, and for a path allowed
only by a pattern checks the function's own module against the patterns too, so that
``app.tasks.os.system`` is refused in the child as it is on a thread.

Both hooks here reach the child by pickle, hence by their import name: the child's
resolver (:class:`ChildResolver`) and its start-up (:class:`ChildSetup`), which imports
the worker's task modules so that their ``@task`` declarations register in the child.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from omniq._functions import resolve_function
from omniq._process.child import current_job
from omniq.allowlist import DECLARED, ENQUEUED, AllowList, import_modules, unwrap
from omniq.tasks import get_declared


class ChildResolver:
    """Resolves a job's ``func_path`` in the child, under the worker's patterns.

    ``patterns`` are the worker's allow-list patterns (``AllowList.patterns``).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._allow: AllowList | None = None  # built in the child, on its first job

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.patterns)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"patterns": self.patterns}  # what crosses to the child: the patterns only

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.patterns = tuple(state["patterns"])
        self._allow = None

    def __call__(self, path: str) -> Callable[..., Any]:
        """The function to run for ``path``; ``TaskForbidden`` or ``FunctionNotFound``."""
        declared = get_declared(path)
        if declared is not None:
            return declared.func
        job = current_job()
        allowed_by = None if job is None else job["context"].get("allowed_by")
        if allowed_by in (DECLARED, ENQUEUED):
            # The worker vouched for this very path (its own declaration, or its own
            # enqueue): the child only has to find it, as a thread would.
            return unwrap(resolve_function(path))
        if self._allow is None:
            self._allow = AllowList(self.patterns)
        return self._allow.resolve(path)  # pattern, then the function's own module


class ChildSetup:
    """A child's start-up: the worker's ``sys.path``, then its task modules.

    A module that cannot be imported fails the child's start (the pool then says
    which), as it fails the worker's own start.
    """

    def __init__(
        self, modules: Sequence[str], patterns: Sequence[str], sys_path: Sequence[str]
    ) -> None:
        self.modules = tuple(modules)
        self.patterns = tuple(patterns)
        self.sys_path = tuple(sys_path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modules={list(self.modules)!r})"

    def __call__(self) -> None:
        """Run in the child before its first job."""
        # A fork server keeps the sys.path of the moment it started: entries the worker
        # added since (the CLI adds the current directory) are added here, in order.
        missing = [entry for entry in self.sys_path if entry not in sys.path]
        sys.path[:0] = missing
        import_modules(self.modules, self.patterns)
