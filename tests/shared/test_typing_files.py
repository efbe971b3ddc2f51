"""The typed user file of ``tests/typing`` is also a working program (mypy checks it in
the ``types`` nox session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_declared_tasks_user_file_runs(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "typing" / "declared_tasks_user.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
