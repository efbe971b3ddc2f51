"""Fixtures shared by every suite: the backend under test and a fresh store per test.

The backend comes from ``OMNIQ_TEST_BACKEND`` (``sqlite`` when unset), so the nox
matrix runs the same contract suite on every backend in both twins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from omniq import Settings, retry

TESTS_DIR = Path(__file__).resolve().parent
# Task functions are imported by path ("task_functions.add"), also by worker
# processes started from tests, which inherit PYTHONPATH.
sys.path.insert(0, str(TESTS_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])
)

BACKEND = os.environ.get("OMNIQ_TEST_BACKEND", "sqlite")
PERSISTENT_BACKENDS = {"sqlite", "file", "postgres"}


@pytest.fixture
def backend() -> str:
    """The backend under test."""
    return BACKEND


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A fresh, not yet existing base directory."""
    return tmp_path / "omniq-store"


@pytest.fixture
def out(tmp_path: Path) -> str:
    """A file tasks append their side effects to."""
    return str(tmp_path / "side-effects.log")


def requires_persistence() -> pytest.MarkDecorator:
    """Skip on backends whose tasks live in one process's memory."""
    return pytest.mark.skipif(
        BACKEND not in PERSISTENT_BACKENDS,
        reason=f"the {BACKEND} backend keeps tasks in one process's memory",
    )


def make_settings(base_dir: Path, **overrides: object) -> Settings:
    """Settings for the backend under test, storing under ``base_dir``."""
    options: dict[str, object] = {"backend": BACKEND, "base_dir": base_dir, "poll_interval": 0.05}
    if BACKEND == "postgres":
        options["dsn"] = os.environ.get(
            "OMNIQ_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        )
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


@pytest.fixture
def settings(base_dir: Path) -> Settings:
    """Settings for a fresh store of the backend under test."""
    return make_settings(base_dir)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries become due at once, so retry tests need not wait 1, 2, 4... seconds."""
    monkeypatch.setattr(retry, "retry_delay", lambda attempts, rng=None: 0.0)
