"""The paired primitives of ``omniq._concurrency`` keep one contract in both twins.

The worker pool waits on an :class:`~omniq._concurrency.AsyncEvent` once per turn of
its loop, woken by finished tasks (on its loop or, in the blocking twin, threads) and
by producers and signal handlers on other threads. While it serves it handles
SIGINT/SIGTERM itself, and gives the process's own handlers back afterwards.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

import pytest
from task_functions import call_later_on_a_thread

from omniq._concurrency import (
    AsyncEvent,
    AsyncWaiter,
    ainstall_signal_handlers,
    ajoin,
    asleep,
    aspawn,
)


async def test_an_event_wait_times_out_false_and_a_set_from_another_thread_wakes_it() -> None:
    event = AsyncEvent()
    started = time.monotonic()
    assert await event.wait(0.05) is False
    assert time.monotonic() - started >= 0.04
    timer = call_later_on_a_thread(0.05, event.set)
    assert await event.wait(30.0) is True
    timer.join()
    assert event.is_set() and await event.wait(0.0) is True
    event.clear()
    assert not event.is_set()
    assert await event.wait(0.01) is False


async def test_one_set_wakes_every_waiter_and_a_wait_after_it_returns_at_once() -> None:
    event = AsyncEvent()
    woken: list[tuple[int, bool]] = []

    async def wait_for_it(number: int) -> None:
        woken.append((number, await event.wait(30.0)))

    waiters = [aspawn(wait_for_it, number) for number in range(3)]
    await asleep(0.05)
    assert woken == []
    event.set()
    assert await ajoin(waiters, 30.0) == 0
    assert sorted(woken) == [(0, True), (1, True), (2, True)]
    started = time.monotonic()
    assert await event.wait(30.0) is True
    assert time.monotonic() - started < 5.0


async def test_signal_handlers_take_sigterm_while_installed_and_then_give_it_back() -> None:
    # A program with a SIGTERM handler of its own runs a pool for a while (process_tasks
    # installs these): afterwards SIGTERM must reach its handler again, not kill it.
    own: list[int] = []
    pool: list[int] = []

    def own_handler(signum: int, _frame: FrameType | None) -> None:
        own.append(signum)

    before = signal.signal(signal.SIGTERM, own_handler)
    try:
        restore = ainstall_signal_handlers(pool.append)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 30.0
        while not pool and time.monotonic() < deadline:
            await asleep(0.01)
        assert pool == [signal.SIGTERM] and own == []
        restore()
        assert signal.getsignal(signal.SIGTERM) is own_handler
        os.kill(os.getpid(), signal.SIGTERM)
        while not own and time.monotonic() < deadline:
            await asleep(0.01)
        assert own == [signal.SIGTERM] and pool == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


async def _hand_over(waiter: AsyncWaiter, value: str) -> None:
    await asleep(0.05)
    waiter.set(value)


async def test_a_waiter_hands_over_one_result_and_ignores_later_ones() -> None:
    # Group commit's callers wait on these: one result each, from another unit.
    waiter = AsyncWaiter()
    assert waiter.handed() is None
    handle = aspawn(_hand_over, waiter, "first")
    assert await waiter.wait() == "first"
    await ajoin([handle], 30.0)
    waiter.set("second")
    waiter.fail(RuntimeError("too late"))
    assert await waiter.wait() == "first"
    assert waiter.handed() == "first"


async def test_a_waiter_raises_the_error_handed_over_at_every_wait() -> None:
    waiter = AsyncWaiter()
    waiter.fail(ValueError("bad row"))
    waiter.set("ignored")
    for _ in range(2):
        with pytest.raises(ValueError, match="bad row"):
            await waiter.wait()
    assert waiter.handed() is None
