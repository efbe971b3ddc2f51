"""Smoke test of the benchmark harness: it runs and its JSON holds every metric.

Benchmarks are not tests: nothing here looks at a time or a rate, only at the shape
of what ``python -m benchmarks`` writes. The harness is not part of the package: it
lives in the repository's top-level ``benchmarks/`` and runs from the root (here through
PYTHONPATH, so that the run's own files land in a temporary directory).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def common() -> ModuleType:
    """``benchmarks.common``, imported from the repository root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.common")


def test_quick_run_writes_every_metric(tmp_path: Path, common: ModuleType) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
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
        env=common.child_env(),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "total bench time" in completed.stdout

    document = json.loads(out.read_text())
    rows = document["omniq"]
    assert {(row["backend"], row["twin"]) for row in rows} == {
        (backend, twin) for backend in ("sqlite-full", "sqlite-fast") for twin in ("async", "sync")
    }
    for row in rows:
        assert set(row["metrics"]) == set(common.METRICS), row["backend"]
        missing = [name for name, value in row["metrics"].items() if value is None]
        assert not missing, f"{row['backend']} {row['twin']} has no {missing}"
    assert set(document["memory"]) == set(common.MEMORY_METRICS)  # the child process ran
    assert document["huey"] == []
    assert {goal["goal"] for goal in document["goals"]}  # evaluated against issue 8's figures
    assert not [note for note in document["notes"] if "failed" in note]


def test_child_processes_find_the_harness(common: ModuleType) -> None:
    assert common.ROOT == ROOT
    env = common.child_env({"PYTHONPATH": "elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "elsewhere"]
    assert common.child_env({})["PYTHONPATH"] == str(ROOT)


def test_the_package_holds_no_benchmark() -> None:
    import omniq

    package = Path(omniq.__file__).parent
    assert not (package / "bench").exists()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("omniq.bench")


def test_the_hop_measure_prints_each_of_its_figures(tmp_path: Path, common: ModuleType) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hops", "--rounds", "20"],
        cwd=tmp_path,
        env=common.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("thread ping-pong", "aiosqlite no-op", "commit direct", "commit via aiosqlite"):
        assert name in done.stdout


def test_the_enqueue_cost_measure_prints_each_workload(tmp_path: Path, common: ModuleType) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.enqueue_cpu", "--calls", "16", "--rounds", "1"],
        cwd=tmp_path,
        env=common.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for workload in ("one producer  omniq blocking", "one producer  omniq async", "8 threads"):
        assert workload in done.stdout
    assert "µs wall" in done.stdout and "µs CPU" in done.stdout
