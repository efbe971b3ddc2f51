"""The paired primitives of ``omniq._concurrency`` keep one contract in both twins.

The worker pool waits on an :class:`~omniq._concurrency.AsyncEvent` once per turn of
its loop, woken by finished tasks (on its loop or, in the blocking twin, threads) and
by producers and signal handlers on other threads.
"""

from __future__ import annotations

import time

from task_functions import call_later_on_a_thread

from omniq._concurrency import AsyncEvent, ajoin, asleep, aspawn


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
