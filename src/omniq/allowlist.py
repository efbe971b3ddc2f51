"""What a worker may run: the allow-list checked before a task's function is imported.

A task names its function by import path, and anyone who can write to the store can
write any path (``os.system`` too). So a worker runs a function only if one of these
holds:

1. it is a task declared with ``@task`` in the worker's process (no import needed:
   the registry holds the function);
2. its path matches one of ``Settings.task_modules`` (glob patterns over import paths
   such as ``"app.tasks.*"``; ``Settings.imports``/``OMNIQ_IMPORT``/``omniq worker
   --import MOD`` add ``MOD.*``), **and** the function found there is itself defined
   under an allowed path, so an attribute walk such as ``app.tasks.os.system`` (the
   ``os`` module that ``app.tasks`` imported) is refused;
3. the facade that owns the pool enqueued that path itself (an application that
   enqueues ``"my_module.my_function"`` and runs ``omniq.worker_pool()`` keeps working).

Anything else fails with :class:`TaskForbidden` (a ``TaskError`` of type ``forbidden``)
whose message names the path and says how to allow it, and nothing is imported.

:func:`import_task_modules` imports the modules a worker is told about, so the tasks
they declare register before the first claim.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from fnmatch import translate
from typing import Any

from omniq._functions import FunctionNotFound, resolve_function
from omniq._validation import has_glob, normalize_module_names, normalize_task_modules
from omniq.config import Settings
from omniq.exceptions import TaskFunctionError
from omniq.models import ErrorType
from omniq.tasks import DeclaredTask, declared_paths, get_declared

DECLARED = "declared"
ENQUEUED = "enqueued"
PATTERN = "pattern"


class TaskForbidden(TaskFunctionError):
    """The allow-list refused the task's function; nothing was imported for it."""

    error_type = ErrorType.FORBIDDEN


class TaskModuleImportError(ImportError):
    """A module the worker was told to import (for its tasks) cannot be imported."""


def _is_dunder(segment: str) -> bool:
    return segment.startswith("__") and segment.endswith("__")


class AllowList:
    """The rules above for one facade and its pools.

    ``task_modules`` are glob patterns over import paths (a pattern without wildcards
    names a module or function and what lies under it: ``"app.tasks"`` allows
    ``app.tasks`` and ``app.tasks.*``); each of ``imports`` allows ``MODULE.*``.
    ``enqueued_paths`` is the set the facade adds every path it enqueues to (rule 3).
    """

    def __init__(
        self,
        task_modules: Sequence[str] = (),
        *,
        imports: Sequence[str] = (),
        enqueued_paths: set[str] | None = None,
    ) -> None:
        modules = normalize_module_names("imports", imports)
        self.patterns: tuple[str, ...] = tuple(
            dict.fromkeys((*normalize_task_modules(task_modules), *modules))
        )
        self.enqueued_paths: set[str] = set() if enqueued_paths is None else enqueued_paths
        self._allowed: dict[str, Callable[..., Any]] = {}  # paths resolved and allowed
        expanded: list[str] = []
        for pattern in self.patterns:
            expanded.append(translate(pattern))
            if not has_glob(pattern):
                expanded.append(translate(pattern + ".*"))
        self._matcher = re.compile("|".join(expanded)) if expanded else None

    @classmethod
    def from_settings(cls, settings: Settings, extra_imports: Sequence[str] = ()) -> AllowList:
        """The allow-list of ``settings.task_modules`` and ``settings.imports`` (+ extras)."""
        return cls(settings.task_modules, imports=(*settings.imports, *extra_imports))

    def __repr__(self) -> str:
        return f"AllowList({list(self.patterns)!r}, enqueued={len(self.enqueued_paths)})"

    @property
    def configured(self) -> bool:
        """Whether any pattern is set (then producers check string paths at enqueue)."""
        return bool(self.patterns)

    def record_enqueued(self, path: str) -> None:
        """Remember that this facade enqueued ``path`` (rule 3). Thread-safe."""
        self.enqueued_paths.add(path)

    def matches(self, path: str) -> bool:
        """Whether ``path`` matches a pattern (rule 2's first half; no import)."""
        if self._matcher is None or any(_is_dunder(part) for part in path.split(".")):
            return False  # dunder segments (__class__, __globals__...) walk into internals
        return self._matcher.fullmatch(path) is not None

    # ------------------------------------------------------------------ the checks

    def rule_for(self, path: str) -> str | None:
        """Which rule allows ``path`` (no import): ``"declared"``, ``"enqueued"``,
        ``"pattern"``, or ``None`` when none does.

        Only a ``"pattern"`` path needs :meth:`verify_resolved` once imported (a process
        executor tells its child which rule the worker applied).
        """
        if get_declared(path) is not None:
            return DECLARED
        if path in self.enqueued_paths:
            return ENQUEUED
        if self.matches(path):
            return PATTERN
        return None

    def check(self, path: str) -> str | None:
        """Why ``path`` may not run here, or ``None`` if a rule allows it. Imports nothing.

        A path allowed by its pattern alone still has to pass :meth:`verify_resolved`
        once imported.
        """
        if self.rule_for(path) is not None:
            return None
        return self._refusal(path)

    def verify_resolved(self, path: str, function: Any) -> str | None:
        """Why the ``function`` found at ``path`` may not run, or ``None`` (after import).

        For a path allowed by its pattern, the function's own ``module.qualname`` must
        match a pattern as well.
        """
        if get_declared(path) is not None or path in self.enqueued_paths:
            return None
        own = _own_path(unwrap(function))
        if own is not None and self.matches(own):
            return None
        found = "an object with no module of its own" if own is None else own
        return (
            f"task function {path!r} is refused: it resolves to {found}, which is defined "
            f"outside the allowed modules ({', '.join(self.patterns)}). A path may only "
            "name a function defined in an allowed module; " + _how_to_allow(own or path)
        )

    def resolve(self, path: str) -> Callable[..., Any]:
        """The function to run for ``path``, or :class:`TaskForbidden` / ``FunctionNotFound``.

        The worker's one call: a declared task comes from the registry without an
        import; otherwise the path is checked, imported, and checked again.
        """
        declared = get_declared(path)
        if declared is not None:
            return declared.func
        allowed = self._allowed.get(path)
        if allowed is not None:  # checked and imported before: a rule that holds stays true
            return allowed
        reason = self.check(path)
        if reason is not None:
            raise TaskForbidden(reason)
        function = resolve_function(path)
        reason = self.verify_resolved(path, function)
        if reason is not None:
            raise TaskForbidden(reason)
        allowed = unwrap(function)
        if len(self._allowed) < 4096:
            self._allowed[path] = allowed
        return allowed

    def check_enqueue(self, path: str) -> None:
        """A producer's check of a string path: ``ValueError`` if a worker would refuse it.

        Only when patterns are configured (:attr:`configured`); rule 3 does not apply
        (the path is being enqueued now). An allowed path is imported, so that a typo
        fails here rather than in the worker.
        """
        if not self.configured or get_declared(path) is not None:
            return
        if not self.matches(path):
            raise ValueError(self._refusal(path))
        try:
            function = resolve_function(path)
        except FunctionNotFound as error:
            raise ValueError(f"cannot enqueue {path!r}: {error}") from None
        own = _own_path(unwrap(function))
        if own is None or not self.matches(own):
            found = "an object with no module of its own" if own is None else own
            raise ValueError(
                f"cannot enqueue {path!r}: it resolves to {found}, outside the allowed "
                f"modules ({', '.join(self.patterns)})"
            )

    def _refusal(self, path: str) -> str:
        patterns = (
            f"it matches none of task_modules ({', '.join(self.patterns)})"
            if self.patterns
            else "no task_modules are allowed"
        )
        return (
            f"task function {path!r} is not allowed here: it is not a task declared with "
            f"@task in this process, {patterns}, and this process did not enqueue it. "
            + _how_to_allow(path)
        )


def _how_to_allow(path: str) -> str:
    module = path.rpartition(".")[0] or path
    return (
        f"To allow it, declare it with @omniq.task and have the worker import {module} "
        f"(omniq worker --import {module}, OMNIQ_IMPORT={module} or Settings.imports), "
        f'or allow its module: Settings(task_modules=["{module}.*"]) or '
        f'OMNIQ_TASK_MODULES="{module}.*".'
    )


def unwrap(function: Callable[..., Any]) -> Callable[..., Any]:
    """The plain function of a declared task; anything else as it is."""
    return function.func if isinstance(function, DeclaredTask) else function


def _own_path(function: Any) -> str | None:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return f"{module}.{qualname}"


# ------------------------------------------------------------------------ task modules


def task_module_names(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """The modules a worker imports for its tasks, in order, without repeats.

    ``settings.imports``, then ``extra`` (``omniq worker --import``), then the module
    part of each ``settings.task_modules`` pattern: its segments before the first one
    with a wildcard (``"app.tasks.*"`` -> ``app.tasks``; ``"app.*.jobs"`` -> ``app``).
    """
    names = [*settings.imports, *normalize_module_names("extra", extra)]
    return list(dict.fromkeys([*names, *pattern_modules(settings.task_modules)]))


def pattern_modules(patterns: Iterable[str]) -> list[str]:
    """The module part of each pattern: its segments before the first one with a
    wildcard (``"app.tasks.*"`` -> ``app.tasks``; ``"app.*.jobs"`` -> ``app``)."""
    names: list[str] = []
    for pattern in patterns:
        literal: list[str] = []
        for segment in pattern.split("."):
            if has_glob(segment):
                break
            literal.append(segment)
        names.append(".".join(literal))
    return list(dict.fromkeys(names))


def import_task_modules(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """Import the modules of :func:`task_module_names`; return every declared task's path.

    The worker calls this at start and prints the paths (the tasks it serves). A module
    that is missing or fails while importing raises :class:`TaskModuleImportError`
    naming it. The caller decides ``sys.path`` (the CLI adds the current directory).
    """
    import_modules(task_module_names(settings, extra), settings.task_modules)
    return declared_paths()


def import_modules(names: Iterable[str], patterns: Iterable[str] = ()) -> None:
    """Import ``names`` in order (:class:`TaskModuleImportError` naming a bad one).

    A name that is also one of ``patterns`` and names no module may name a function:
    then its parent module must exist and have that attribute.
    """
    patterns = tuple(patterns)
    for name in names:
        _import(name, patterns)


def _import(name: str, patterns: Iterable[str]) -> None:
    try:
        importlib.import_module(name)
        return
    except ModuleNotFoundError as error:
        # A wildcard-free pattern may name a function ("app.tasks.send"): then its
        # parent module must exist and have that attribute.
        parent, _, leaf = name.rpartition(".")
        if error.name != name or not parent or name not in patterns:
            raise TaskModuleImportError(f"cannot import task module {name!r}: {error}") from error
    except Exception as error:
        raise TaskModuleImportError(
            f"importing task module {name!r} raised {type(error).__name__}: {error}"
        ) from error
    _import(parent, ())
    if not hasattr(importlib.import_module(parent), leaf):
        raise TaskModuleImportError(
            f"cannot import task module {name!r}: no module of that name, and {parent} "
            f"has no attribute {leaf!r}"
        )
