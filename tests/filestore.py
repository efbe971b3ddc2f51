"""Helpers for the file backend's own tests: records, paths and names in its layout."""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omniq import Settings
from omniq.models import create_task
from omniq.records import TaskRecord, record_from_task
from omniq.serialization import DEFAULT_SERIALIZER

PENDING_NAME = re.compile(r"(?P<rank>\d{3})-\d{20}-\d{20}-(?P<id>[0-9a-f-]{36})\.json")
ID_AT = 46  # where the task id starts in a pending name


def new_record(
    eta: dt.datetime | None = None,
    args: tuple[int, int] = (1, 2),
    **options: Any,
) -> TaskRecord:
    """A new pending ``task_functions.add`` record (``options``: queue, priority, unique_key...)."""
    task = create_task("task_functions.add", list(args), {}, eta=eta, max_retries=3, **options)
    return record_from_task(task, DEFAULT_SERIALIZER)


def past(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)


def visible(directory: Path) -> list[str]:
    """The names in ``directory`` that are not hidden (none if it does not exist)."""
    try:
        return sorted(name for name in os.listdir(directory) if not name.startswith("."))
    except FileNotFoundError:
        return []


def hidden_files(root: Path) -> list[str]:
    """Hidden files under ``root`` (temporaries, intent markers), not the ones that stay.

    The wake-up sockets and the state records' lock files (``state/{kind}/.lock``)
    are aside: they are no change in progress.
    """
    return [
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.startswith(".") and "wakeup" not in folder and name != ".lock"
    ]


def pending_ids(root: Path, queue: str = "default") -> list[str]:
    """The ids of the pending files of ``queue``, in name (claim) order."""
    return [name[ID_AT:-5] for name in visible(root / "pending" / queue)]


def file_settings(root: Path, **overrides: Any) -> Settings:
    """Settings of a file store at ``root``; the tests' task functions may run (allow-list)."""
    options: dict[str, Any] = {"poll_interval": 0.05, "task_modules": ("task_functions",)}
    options.update(overrides)
    return Settings(backend="file", base_dir=root, **options)


@contextlib.contextmanager
def counting_opens(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths under ``root`` opened (``open``, ``os.open``) while the block runs."""
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith(str(root)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(root)):
            opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", counting_open)
        patch.setattr(os, "open", counting_os_open)
        yield opened


@contextlib.contextmanager
def unblocking_fifos(root: Path, after: float) -> Iterator[list[str]]:
    """After ``after`` seconds, unblock any reader stuck on a FIFO under ``root``.

    Yields the FIFOs it had to unblock (none, when nothing blocked on one). Without
    it a FIFO opened without ``O_NONBLOCK`` would hang the suite instead of failing.
    """
    freed: list[str] = []
    done = threading.Event()

    def watch() -> None:
        if done.wait(after):
            return
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if stat.S_ISFIFO(os.lstat(path).st_mode):
                        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                        freed.append(path)
                except OSError:
                    continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield freed
    finally:
        done.set()
        watcher.join()
