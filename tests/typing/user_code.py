"""Code as a user of omniq writes it, checked by ``mypy --strict`` (the ``types`` nox session).

Nothing here runs as a test: it proves that the public API type-checks the way the
README uses it. A ``# type: ignore[...]`` marks a call that must stay rejected: mypy's
strict mode reports an ignore that is no longer needed, so the check fails both when good
code stops type-checking and when bad code starts to.
"""

from __future__ import annotations

import os
from pathlib import Path

from omniq import AsyncOmniQ, OmniQ, Settings


class DataDir(os.PathLike[str]):
    """A user's own path-like object."""

    def __fspath__(self) -> str:
        return "./data"


def settings_from_strings_and_paths() -> list[Settings]:
    """Every spelling of a directory that the README and a user's config use."""
    return [
        Settings(base_dir="./data"),
        Settings(base_dir=Path("./data")),
        Settings(base_dir=DataDir()),
        Settings(backend="file", base_dir="~/omniq"),
        Settings(backend="postgres", dsn="postgresql://localhost/app"),
        Settings(),
        Settings.from_env(base_dir="./data"),
    ]


def base_dir_reads_as_a_path(settings: Settings) -> Path:
    """Readers get a ``Path``, whatever the constructor was given."""
    database: Path = settings.sqlite_path
    assert database.parent == settings.base_dir
    return settings.base_dir / "exports"


def facades(settings: Settings) -> tuple[AsyncOmniQ, OmniQ]:
    """Both twins take the same settings."""
    return AsyncOmniQ(settings), OmniQ(settings)


def rejected() -> None:
    """Calls a type checker must refuse."""
    Settings(base_dir=42)  # type: ignore[arg-type]
    Settings(base_dir=b"./data")  # type: ignore[arg-type]
    Settings(concurrency="4")  # type: ignore[arg-type]
    Settings().base_dir = Path("elsewhere")  # type: ignore[misc]
