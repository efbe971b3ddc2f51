"""Every Python example in README.md and docs/*.md runs, verbatim, as a program."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._examples import python_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [
    pytest.param(code, id=f"{path.relative_to(ROOT)}:{line}")
    for path in DOCUMENTS
    for line, code in python_blocks(path)
]


def test_the_readme_has_examples() -> None:
    assert len(python_blocks(ROOT / "README.md")) >= 8


_USES_DJANGO = re.compile(r"^\s*(?:from|import) django\b", re.MULTILINE)


def django_missing() -> str | None:
    """Why docs/django.md's examples cannot run here, or ``None`` (without importing it)."""
    if sys.version_info < (3, 12):
        return "Django 6 needs Python 3.12+"
    try:
        importlib.metadata.version("django")
    except importlib.metadata.PackageNotFoundError:
        return "Django is not installed (the django extra)"
    return None


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code: str, tmp_path: Path) -> None:
    if _USES_DJANGO.search(code) and (reason := django_missing()) is not None:
        pytest.skip(reason)
    env = dict(os.environ)
    # The repository root makes "examples.tasks" importable; the data home keeps
    # Settings() defaults inside the test's own directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["XDG_DATA_HOME"] = str(tmp_path / "data-home")
    for name in [name for name in env if name.startswith("OMNIQ_")]:
        del env[name]
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
