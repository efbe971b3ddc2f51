"""Declared tasks: the ``@task`` decorator, the process-wide registry and typed enqueueing.

::

    @task(queue="emails", priority=5, max_retries=5, timeout=30)
    def send_email(to: str, subject: str) -> bool: ...

    send_email("a@b.c", "hi")                                   # runs in place
    task_id = send_email.using(omniq).enqueue("a@b.c", subject="hi")  # typed

``@task`` registers the function under its import path (``module.qualname``), the
path a worker imports it by, so a worker that imported the module runs it (see
:mod:`omniq.allowlist`). The decorator's options are the defaults of every enqueue
of the task; an option given to ``using()`` (or to ``enqueue``) wins over them, and
the facade's settings fill in the rest. ``cron=``/``every=`` also declare a schedule
(:mod:`omniq.schedules`) named after the task.

Everything is checked at declaration: a bad option raises ``ValueError``/``TypeError``
naming the value, and a function no worker could import by path (a lambda, a function
defined inside another one) is refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from omniq._validation import (
    check_func_path,
    normalize_eta,
    normalize_interval,
    normalize_max_retries,
    normalize_priority,
    normalize_queue,
    normalize_timeout,
    normalize_unique_key,
)
from omniq.schedules import (
    DEFAULT_MAX_CATCH_UP,
    Schedule,
    register_schedule,
    unregister_schedule,
)

if TYPE_CHECKING:
    from omniq._async.core import AsyncOmniQ
    from omniq._sync.core import OmniQ

P = ParamSpec("P")
R = TypeVar("R")

DECLARED_OPTIONS = ("queue", "priority", "max_retries", "timeout")
"""The enqueue options a declaration may set (``unique_key`` and ``eta`` are per call)."""


@dataclass(frozen=True)
class TaskOptions:
    """A task's declared enqueue defaults; ``None`` leaves an option to the facade."""

    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize in place once, at construction
        if self.queue is not None:
            set_(self, "queue", normalize_queue(self.queue))
        if self.priority is not None:
            set_(self, "priority", normalize_priority(self.priority))
        set_(self, "max_retries", normalize_max_retries(self.max_retries))
        set_(self, "timeout", normalize_timeout(self.timeout))

    def as_kwargs(self) -> dict[str, Any]:
        """The options that are set, as ``enqueue`` keyword arguments."""
        values = {name: getattr(self, name) for name in DECLARED_OPTIONS}
        return {name: value for name, value in values.items() if value is not None}


_NO_OPTIONS = TaskOptions()


class DeclaredTask(Generic[P, R]):
    """A function declared with ``@task``: callable in place, enqueued by path.

    * ``path``: the import path workers run it by (``"app.tasks.send_email"``).
    * ``func``: the function itself.
    * ``options``: its declared enqueue defaults (:class:`TaskOptions`).
    * ``schedule``: the :class:`~omniq.schedules.Schedule` of ``cron=``/``every=``, or ``None``.
    """

    def __init__(
        self,
        func: Callable[P, R],
        path: str,
        options: TaskOptions,
        schedule: Schedule | None,
    ) -> None:
        # Name, docstring, __module__ and __wrapped__ (so inspect.signature sees func's);
        # first, so that attributes of the function never shadow the ones set below.
        functools.update_wrapper(self, func)
        self.func = func
        self.path = path
        self.options = options
        self.schedule = schedule
        self._signature = inspect.signature(func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as if it were not declared."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        options = "".join(f" {name}={value!r}" for name, value in self.options.as_kwargs().items())
        return f"<task {self.path}{options}>"

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function (``async def``)."""
        return inspect.iscoroutinefunction(self.func)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` if ``func(*args, **kwargs)`` would not bind."""
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"wrong arguments for task {self.path}(): {error}") from None

    @overload
    def using(
        self,
        facade: AsyncOmniQ,
        *,
        eta: dt.datetime | None = None,
        interval: dt.timedelta | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> AsyncBoundTask[P]: ...

    @overload
    def using(
        self,
        facade: OmniQ,
        *,
        eta: dt.datetime | None = None,
        interval: dt.timedelta | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> BoundTask[P]: ...

    def using(
        self,
        facade: AsyncOmniQ | OmniQ,
        *,
        eta: dt.datetime | None = None,
        interval: dt.timedelta | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> AsyncBoundTask[P] | BoundTask[P]:
        """Bind a facade and per-call options; ``enqueue(...)`` takes the function's arguments.

        With an ``AsyncOmniQ``, ``enqueue`` returns an awaitable of the task id; with an
        ``OmniQ``, the task id. Options given here win over the declared ones, which
        win over the facade's settings; ``None`` means "not given".
        """
        # Imported here: the facades import this module (for func_path_of).
        from omniq._async.core import AsyncOmniQ
        from omniq._sync.core import OmniQ

        if not isinstance(facade, (AsyncOmniQ, OmniQ)):
            raise TypeError(f"{self.path}.using() needs an OmniQ or AsyncOmniQ, got {facade!r}")
        given = {
            "eta": normalize_eta(eta),
            "interval": normalize_interval(interval),
            "queue": None if queue is None else normalize_queue(queue),
            "priority": None if priority is None else normalize_priority(priority),
            "unique_key": normalize_unique_key(unique_key),
            "max_retries": normalize_max_retries(max_retries),
            "timeout": normalize_timeout(timeout),
        }
        options = self.options.as_kwargs()
        options.update((name, value) for name, value in given.items() if value is not None)
        if isinstance(facade, AsyncOmniQ):
            return AsyncBoundTask(self, facade, options)
        return BoundTask(self, facade, options)


class BoundTask(Generic[P]):
    """A declared task bound to an ``OmniQ`` and options (see :meth:`DeclaredTask.using`)."""

    __slots__ = ("facade", "options", "task")

    def __init__(self, task: DeclaredTask[P, Any], facade: OmniQ, options: dict[str, Any]) -> None:
        self.task = task
        self.facade = facade
        self.options = options

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task.path} on {self.facade!r} {self.options!r}>"

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Store a task that calls the function with these arguments; return its id."""
        self.task.check_arguments(args, kwargs)
        return self.facade.enqueue(self.task.path, list(args), dict(kwargs), **self.options)


class AsyncBoundTask(Generic[P]):
    """A declared task bound to an ``AsyncOmniQ`` and options (see :meth:`DeclaredTask.using`)."""

    __slots__ = ("facade", "options", "task")

    def __init__(
        self, task: DeclaredTask[P, Any], facade: AsyncOmniQ, options: dict[str, Any]
    ) -> None:
        self.task = task
        self.facade = facade
        self.options = options

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task.path} on {self.facade!r} {self.options!r}>"

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, str]:
        """Store a task that calls the function with these arguments; await its id.

        The arguments are checked against the function's signature here, at the
        call, before anything is awaited.
        """
        self.task.check_arguments(args, kwargs)
        return self.facade.enqueue(self.task.path, list(args), dict(kwargs), **self.options)


# ------------------------------------------------------------------------- the decorator


class _Declarator:
    """What ``@task(...)`` returns: applied to a function, it declares it."""

    __slots__ = ("_options", "_schedule")

    def __init__(self, options: TaskOptions, schedule: dict[str, Any]) -> None:
        self._options = options
        self._schedule = schedule

    def __call__(self, func: Callable[P, R]) -> DeclaredTask[P, R]:
        return _declare(func, self._options, self._schedule)


@overload
def task(func: Callable[P, R], /) -> DeclaredTask[P, R]: ...


@overload
def task(
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    cron: str | None = None,
    tz: str | None = None,
    every: dt.timedelta | float | None = None,
    catch_up: bool = False,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> _Declarator: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    cron: str | None = None,
    tz: str | None = None,
    every: dt.timedelta | float | None = None,
    catch_up: bool = False,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> DeclaredTask[P, R] | _Declarator:
    """Declare a task: ``@task`` or ``@task(option=...)`` on a module-level function.

    Enqueue defaults: ``queue``, ``priority`` (-100..100, higher first),
    ``max_retries`` (executions in total), ``timeout`` (seconds per execution).

    A schedule, named after the task: ``cron`` (five fields, or six with the seconds
    first; ``tz`` an IANA time zone, UTC by default) or ``every`` (a ``timedelta`` or
    seconds), with ``args``/``kwargs`` for each fire and ``catch_up``/``max_catch_up``
    for fires missed while no worker ran (see :mod:`omniq.schedules`).
    """
    options = TaskOptions(queue=queue, priority=priority, max_retries=max_retries, timeout=timeout)
    schedule: dict[str, Any] = {
        "cron": cron,
        "tz": tz,
        "every": every,
        "catch_up": catch_up,
        "max_catch_up": max_catch_up,
        "args": args,
        "kwargs": kwargs,
    }
    if cron is None and every is None:
        given = [
            name
            for name, value in schedule.items()
            if value is not None and value != _SCHEDULE_DEFAULTS.get(name)
        ]
        if given:
            raise ValueError(
                f"@task({', '.join(f'{name}=' for name in given)}) applies to schedules only: "
                "add cron= or every="
            )
    declarator = _Declarator(options, schedule)
    if func is None:
        return declarator
    return declarator(func)


_SCHEDULE_DEFAULTS: dict[str, Any] = {"catch_up": False, "max_catch_up": DEFAULT_MAX_CATCH_UP}


# --------------------------------------------------------------------------- the registry

_TASKS: dict[str, DeclaredTask[..., Any]] = {}
_LOCK = threading.RLock()


def _declare(
    func: Callable[P, R], options: TaskOptions, schedule_options: dict[str, Any]
) -> DeclaredTask[P, R]:
    candidate: Any = func  # checked as Any: the checks would narrow away P and R
    if isinstance(candidate, DeclaredTask):
        raise TypeError(f"{candidate.path} is already a declared task")
    if not inspect.isfunction(candidate):
        raise TypeError(f"@task needs a function (def or async def), got {func!r}")
    if inspect.isgeneratorfunction(candidate) or inspect.isasyncgenfunction(candidate):
        raise TypeError(
            f"@task needs a plain or coroutine function, not a generator function: {func!r}"
        )
    path = _import_path(func, "@task")
    parameters = list(inspect.signature(candidate).parameters)
    if "." in candidate.__qualname__ and parameters[:1] in (["self"], ["cls"]):
        raise ValueError(
            f"@task: {path} is a method, which a worker cannot call without its "
            f"{parameters[0]}; declare a module-level function or a @staticmethod"
        )
    schedule = _schedule_for(func, path, options, schedule_options)
    declared = DeclaredTask(func, path, options, schedule)
    with _LOCK:
        existing = _TASKS.get(path)
        if existing is not None and not _redefinition(existing, declared):
            raise ValueError(
                f"task {path} is already declared by another function ({_where(existing.func)}); "
                "two tasks cannot share an import path"
            )
        _TASKS[path] = declared
        if schedule is not None:
            register_schedule(schedule)
        elif existing is not None and existing.schedule is not None:
            unregister_schedule(existing.schedule.name)  # redeclared without a schedule
    return declared


def _redefinition(existing: DeclaredTask[..., Any], new: DeclaredTask[..., Any]) -> bool:
    """Whether ``new`` replaces ``existing``: the same function or the same definition.

    A module that is reloaded (or a function redefined in the file that defined it)
    declares its tasks again with new function objects from the same source file;
    the newest declaration wins, as the module's own name binding does. In
    ``__main__`` (a script, a notebook whose cells each have a file of their own) a
    redefinition always wins.
    """
    if existing.func is new.func or new.path.startswith("__main__."):
        return True
    return _source_file(existing.func) == _source_file(new.func)


def _source_file(func: Callable[..., Any]) -> str | None:
    code = getattr(func, "__code__", None)
    return None if code is None else str(code.co_filename)


def _where(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    return "unknown place" if code is None else f"{code.co_filename}:{code.co_firstlineno}"


def _schedule_for(
    func: Callable[..., Any], path: str, options: TaskOptions, values: dict[str, Any]
) -> Schedule | None:
    if values["cron"] is None and values["every"] is None:
        return None
    schedule = Schedule(
        name=path,
        func_path=path,
        cron=values["cron"],
        every=values["every"],
        tz="UTC" if values["tz"] is None else values["tz"],
        args=values["args"] or (),
        kwargs=values["kwargs"] or {},
        catch_up=values["catch_up"],
        max_catch_up=values["max_catch_up"],
        **options.as_kwargs(),
    )
    try:
        inspect.signature(func).bind(*schedule.args, **schedule.kwargs)
    except TypeError as error:
        raise TypeError(
            f"the schedule's args={list(schedule.args)!r} kwargs={schedule.kwargs!r} "
            f"do not fit {path}(): {error}"
        ) from None
    return schedule


def _import_path(func: Any, what: str) -> str:
    """``module.qualname`` of ``func``, or a clear error when no worker could import it."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(
            f"{what}: {func!r} has no import path (module and qualified name); "
            "pass a module-level function or its 'module.function' path"
        )
    if getattr(func, "__name__", None) == "<lambda>":
        raise ValueError(
            f"{what}: a lambda has no import path a worker could use ({func!r}); "
            "define a function with def at module level"
        )
    if "<locals>" in qualname or "<" in qualname:
        raise ValueError(
            f"{what}: {module}.{qualname} is defined inside a function, so a worker cannot "
            "import it by path; define it at module level"
        )
    return check_func_path(f"{module}.{qualname}")


def get_declared(path: str) -> DeclaredTask[..., Any] | None:
    """The task declared in this process under ``path``, or ``None``."""
    return _TASKS.get(path)


def is_declared(path: str) -> bool:
    """Whether a task is declared in this process under ``path``."""
    return path in _TASKS


def declared_paths() -> list[str]:
    """The import paths of the tasks declared in this process, sorted."""
    with _LOCK:
        return sorted(_TASKS)


def declared_options(path: str) -> TaskOptions:
    """The declared enqueue defaults of ``path`` (no options for an undeclared path)."""
    declared = _TASKS.get(path)
    return _NO_OPTIONS if declared is None else declared.options


def enqueue_options(path: str, **given: Any) -> dict[str, Any]:
    """The options an enqueue of ``path`` uses: those given, then the declared defaults.

    ``given`` holds the call's options (``None`` for "not given"); the result holds only
    the options that are set, so the facade's own defaults fill in the rest.
    """
    options = declared_options(path).as_kwargs()
    options.update((name, value) for name, value in given.items() if value is not None)
    return options


def func_path_of(target: Callable[..., Any] | str) -> str:
    """The import path a task for ``target`` stores: a declared task's path, a
    function's ``module.qualname``, or a ``"module.function"`` string (checked).

    A lambda, a function defined inside another one, a bound method or a callable
    that is not found at its own path raises ``ValueError``/``TypeError``.
    """
    if isinstance(target, str):
        return check_func_path(target)
    if isinstance(target, DeclaredTask):
        return target.path
    if not callable(target):
        raise TypeError(
            f"a task is a function or a 'module.function' path, got {type(target).__name__}: "
            f"{target!r}"
        )
    if inspect.ismethod(target) and not isinstance(target.__self__, type):
        raise TypeError(
            f"{target!r} is bound to an instance, which a worker cannot rebuild; "
            "enqueue a function, a staticmethod or a classmethod"
        )
    path = _import_path(target, "enqueue")
    found = _lookup(path)
    if found is not None and not _same_callable(found, target):
        raise ValueError(
            f"{target!r} is not what a worker finds at its import path {path!r} "
            f"(that is {found!r}); was it wrapped by a decorator without functools.wraps?"
        )
    return path


def _lookup(path: str) -> Any:
    """What ``path`` names among the modules already imported (no import), or ``None``."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        target: Any = module
        for attribute in parts[split:]:
            target = getattr(target, attribute, None)
            if target is None:
                return None
        return target
    return None


def _same_callable(found: Any, target: Any) -> bool:
    if found is target or found == target:  # == for classmethods, bound anew on each access
        return True
    return isinstance(found, DeclaredTask) and found.func is target
