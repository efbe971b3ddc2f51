"""Smoke test of the benchmark harness: it runs and its JSON holds every metric.

Benchmarks are not tests: nothing here looks at a time or a rate, only at the shape
of what ``python -m omniq.bench`` writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from omniq.bench.common import MEMORY_METRICS, METRICS


def test_quick_run_writes_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniq.bench",
            "--quick",
            "--no-huey",
            "--tasks",
            "200",
            "--backends",
            "sqlite",
            "--json",
            str(out),
            "--store-dir",
            str(tmp_path / "stores"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # any chart or docs path would land here, not in the repository
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "total bench time" in completed.stdout

    document = json.loads(out.read_text())
    rows = document["omniq"]
    assert {(row["backend"], row["twin"]) for row in rows} == {
        (backend, twin) for backend in ("sqlite-full", "sqlite-fast") for twin in ("async", "sync")
    }
    for row in rows:
        assert set(row["metrics"]) == set(METRICS), row["backend"]
        missing = [name for name, value in row["metrics"].items() if value is None]
        assert not missing, f"{row['backend']} {row['twin']} has no {missing}"
    assert set(document["memory"]) == set(MEMORY_METRICS)
    assert document["huey"] == []
    assert {goal["goal"] for goal in document["goals"]}  # evaluated against issue 8's figures
    assert not [note for note in document["notes"] if "failed" in note]
