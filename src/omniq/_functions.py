"""Resolve a task's ``func_path`` to a callable, by import path only.

Nothing from the store is executed except a function that can be imported by
name, so a task record can never smuggle code into a worker.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from omniq.exceptions import TaskFunctionError
from omniq.models import ErrorType


class FunctionNotFound(TaskFunctionError):
    """The module or attribute named by ``func_path`` does not exist, or is not callable."""

    error_type = ErrorType.IMPORT


class BadArguments(TaskFunctionError):
    """The stored arguments do not fit the function's signature."""

    error_type = ErrorType.ARGUMENTS


@functools.lru_cache(maxsize=1024)
def resolve_function(func_path: str) -> Callable[..., Any]:
    """The callable at ``func_path`` (``package.module.attr[.attr...]``)."""
    parts = func_path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # this prefix is not a module: try a shorter one
            raise FunctionNotFound(f"cannot import {func_path}: {error}") from error
        except Exception as error:  # the module exists but failed while importing
            raise FunctionNotFound(
                f"cannot import {func_path}: importing {module_name} raised "
                f"{type(error).__name__}: {error}"
            ) from error
        for attribute in parts[split:]:
            try:
                target = getattr(target, attribute)
            except AttributeError:
                raise FunctionNotFound(
                    f"cannot find {func_path}: {module_name} has no attribute "
                    f"{'.'.join(parts[split:])!r}"
                ) from None
        if not callable(target):
            raise FunctionNotFound(f"{func_path} is not callable (it is a {type(target).__name__})")
        return target  # type: ignore[no-any-return]
    raise FunctionNotFound(f"cannot import {func_path}: no module named {parts[0]!r}")


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # some builtins have no introspectable signature: let the call decide


# (function, number of positional arguments, keyword names) that bound before: whether
# arguments bind depends on their count and names only, never on their values.
_BOUND: set[tuple[Any, int, frozenset[str]]] = set()


def check_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise :class:`BadArguments` if ``fn(*args, **kwargs)`` cannot bind."""
    shape = (fn, len(args), frozenset(kwargs))
    try:
        if shape in _BOUND:
            return
    except TypeError:  # an unhashable callable: checked every time
        shape = None  # type: ignore[assignment]
    try:
        signature = _signature(fn)
    except TypeError:  # unhashable callable: not cacheable, check without the cache
        signature = _signature.__wrapped__(fn)
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise BadArguments(
            f"wrong arguments for {getattr(fn, '__qualname__', fn)!r}: {error}"
        ) from None
    if shape is not None and len(_BOUND) < 4096:
        _BOUND.add(shape)
