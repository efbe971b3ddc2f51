"""Fixtures for the tests of declared tasks: registry isolation and throw-away packages.

Declarations are process-wide, so each test restores the registries it changed, and
modules a test writes live in a package with a fresh name under its ``tmp_path``.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omniq import schedules, tasks


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo every task and schedule declaration the test makes."""
    saved_tasks = dict(tasks._TASKS)
    saved_schedules = dict(schedules._SCHEDULES)
    yield
    tasks._TASKS.clear()
    tasks._TASKS.update(saved_tasks)
    schedules._SCHEDULES.clear()
    schedules._SCHEDULES.update(saved_schedules)


MakePackage = Callable[[dict[str, str]], str]


@pytest.fixture
def make_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> Iterator[MakePackage]:
    """``make_package({"tasks.py": source, ...})`` writes a fresh package; returns its name.

    The package is importable (``<name>.tasks``) but not imported; it and its modules
    leave ``sys.modules`` after the test.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"pkg_{uuid.uuid4().hex[:12]}"
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("", encoding="utf-8")
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.parent != root and not (path.parent / "__init__.py").exists():
                (path.parent / "__init__.py").write_text("", encoding="utf-8")
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        made.append(name)
        return name

    yield make
    for module in [m for m in sys.modules if m.split(".")[0] in made]:
        del sys.modules[module]
