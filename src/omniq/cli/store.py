"""Which store a command talks to: flags first, then ``OMNIQ_*`` variables, then defaults.

The command line always works on a real, shared store. The memory backend keeps
tasks in one process, so it is refused here, and ``OMNIQ_EAGER`` (a test setting)
is ignored: a command never runs a task inline.
"""

from __future__ import annotations

import argparse
from typing import Any

from omniq.cli.errors import UsageError
from omniq.config import Settings


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """``Settings.from_env`` with the store flags (and ``extra``) winning."""
    overrides: dict[str, Any] = {
        name: value
        for name in ("backend", "base_dir", "dsn")
        if (value := getattr(args, name, None)) is not None
    }
    overrides.update({name: value for name, value in extra.items() if value is not None})
    try:
        settings = Settings.from_env(eager=False, **overrides)
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad store settings: {error}") from None
    if settings.backend == "memory":
        raise UsageError(
            "the memory backend keeps tasks inside one process, so a command cannot share "
            "them: use --backend sqlite, file or postgres (or change OMNIQ_BACKEND)"
        )
    return settings


def describe_store(settings: Settings) -> str:
    """A short name of the store for people (a DSN is not shown: it may hold a password)."""
    if settings.backend == "sqlite":
        return f"sqlite {settings.sqlite_path.absolute()}"
    if settings.backend == "file":
        return f"file store {settings.base_dir.absolute()}"
    return settings.backend
