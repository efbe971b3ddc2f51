"""Every Python example of the spec runs verbatim (placeholders aside; see spec_runner)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._examples import python_blocks

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "spec" / "seed-readme.md"
UPSTREAM = ROOT.parent / "shared" / "spec" / "seed-readme.md"
RUNNER = Path(__file__).resolve().parent / "spec_runner.py"
EXAMPLES = [pytest.param(code, id=f"spec:{line}") for line, code in python_blocks(SPEC)]


def test_vendored_spec_matches_the_shared_one() -> None:
    if not UPSTREAM.exists():
        pytest.skip(f"no shared spec at {UPSTREAM} (only beside the team's checkout)")
    assert SPEC.read_text() == UPSTREAM.read_text(), (
        "the spec changed: copy ../shared/spec/seed-readme.md to tests/spec/"
    )


def test_the_spec_has_examples() -> None:
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("code", EXAMPLES)
def test_spec_example_runs(code: str, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(tmp_path / "data-home")
    for name in [name for name in env if name.startswith("OMNIQ_")]:
        del env[name]
    completed = subprocess.run(
        [sys.executable, str(RUNNER), str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
