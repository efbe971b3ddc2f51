"""A small progress display for ``omniq worker --limit N``, on stderr.

On a terminal it redraws one bar in place (``[#######-------]  7/15 tasks``); elsewhere
(a log file, a pipe) it writes one plain line each time the count changes. A reporter
reads the pool's ``processed`` count a few times a second: a thread for the blocking
pool, a task on the event loop for the asyncio one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from omniq._concurrency import spawn

BAR_WIDTH = 30
REFRESH = 0.1


class Progress:
    """Shows ``done`` out of ``total`` tasks; :meth:`update` only draws on a change."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.is_tty = self.stream.isatty()
        self._shown: int | None = None
        self._closed = False

    def render(self, done: int) -> str:
        """The bar for ``done`` tasks, without a line ending."""
        shown = min(done, self.total)
        filled = BAR_WIDTH * shown // self.total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        percent = 100 * shown // self.total
        return f"[{bar}] {shown}/{self.total} tasks {percent:3d}%"

    def update(self, done: int) -> None:
        """Draw the count if it changed since the last time."""
        if self._closed or done == self._shown:
            return
        self._shown = done
        if self.is_tty:
            self.stream.write("\r" + self.render(done))
        else:
            self.stream.write(f"omniq worker: {min(done, self.total)}/{self.total} tasks done\n")
        self.stream.flush()

    def close(self, done: int) -> None:
        """Draw the final count and end the bar's line."""
        self.update(done)
        if self.is_tty and not self._closed:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True


def watch_in_thread(read: Callable[[], int], progress: Progress) -> Callable[[], None]:
    """Report ``read()`` from a thread; return the function that stops it."""
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(REFRESH):
            progress.update(read())

    thread = spawn(report, name="omniq-progress")

    def finish() -> None:
        stop.set()
        thread.join(1.0)

    return finish


def watch_in_loop(read: Callable[[], int], progress: Progress) -> asyncio.Task[None]:
    """Report ``read()`` from a task of the running loop; cancel the task to stop it."""

    async def report() -> None:
        while True:
            progress.update(read())
            await asyncio.sleep(REFRESH)

    return asyncio.get_running_loop().create_task(report(), name="omniq-progress")
