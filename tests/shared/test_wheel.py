"""The wheel a user installs: it holds the package, its license and its type marker, and
nothing else (no benchmark harness, no tests).

The wheel is built with ``python -m build --wheel --no-isolation`` from a copy of the
sources (so a stale ``build/`` of the checkout cannot leak into it), with the build
backend that the ``dev`` extra installs.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PATTERNS = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from the repository's current sources."""
    scratch = tmp_path_factory.mktemp("wheel")
    sources = scratch / "sources"
    sources.mkdir()
    for entry in ROOT.iterdir():
        if entry.is_file():  # pyproject.toml, README.md, LICENSE, and any build file
            shutil.copy2(entry, sources / entry.name)
    shutil.copytree(ROOT / "src", sources / "src", ignore=shutil.ignore_patterns(*SOURCE_PATTERNS))
    out = scratch / "dist"
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=sources,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (built,) = out.glob("omniq-*.whl")
    return zipfile.ZipFile(built)


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (name,) = {n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info")}
    return name


def _metadata(wheel: zipfile.ZipFile) -> Message:
    return email.message_from_bytes(wheel.read(f"{_dist_info(wheel)}/METADATA"))


def test_the_wheel_holds_the_license(wheel: zipfile.ZipFile) -> None:
    license_text = wheel.read(f"{_dist_info(wheel)}/licenses/LICENSE").decode()
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    metadata = _metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: with a license expression, no license classifier may remain.
    assert not [c for c in metadata.get_all("Classifier", []) if c.startswith("License ::")]


def test_the_wheel_is_typed(wheel: zipfile.ZipFile) -> None:
    assert "omniq/py.typed" in wheel.namelist()
    assert "Typing :: Typed" in _metadata(wheel).get_all("Classifier", [])


def test_the_wheel_holds_the_package_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    dist_info = _dist_info(wheel)
    assert [n for n in names if not n.startswith(("omniq/", f"{dist_info}/"))] == []
    assert [n for n in names if "bench" in n.lower()] == []  # the harness is benchmarks/
    assert [n for n in names if n.startswith(("omniq/tests", "tests/"))] == []
    package = ROOT / "src" / "omniq"
    sources = {
        "omniq/" + path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources == {n for n in names if n.endswith(".py")}


def test_the_wheel_holds_the_dashboard_assets(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    web = ROOT / "src" / "omniq" / "web"
    assets = {
        "omniq/web/" + path.relative_to(web).as_posix()
        for folder in ("templates", "static")
        for path in (web / folder).iterdir()
        if path.is_file()
    }
    assert {"omniq/web/static/omniq.js", "omniq/web/templates/base.html"} <= assets
    assert assets <= names  # every template and asset: the dashboard needs no CDN
    metadata = _metadata(wheel)
    assert "web" in metadata.get_all("Provides-Extra", [])
    requires = metadata.get_all("Requires-Dist", [])
    assert any(dep.startswith("starlette") and 'extra == "web"' in dep for dep in requires)


def test_the_wheel_metadata(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    assert metadata["Requires-Python"] == ">=3.10"
    classifiers = metadata.get_all("Classifier", [])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Issues", "Changelog"}
    assert any(dep.startswith("platformdirs") for dep in metadata.get_all("Requires-Dist", []))
    entry_points = wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode()
    assert "omniq = omniq.cli:main" in entry_points
