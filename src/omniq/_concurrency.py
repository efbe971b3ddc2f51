"""The one module that knows asyncio from threads: paired primitives.

``src/omniq/_async`` is written against the async half; ``scripts/unasync.py``
renames each async name to its blocking twin (``asleep`` -> ``sleep``,
``AsyncEvent`` -> ``Event``...), so the generated ``_sync`` code calls the
blocking half. Both halves have the same signatures. Every primitive takes a
callable and its arguments, never a coroutine object: in the blocking twin
``await f()`` becomes ``f()``, which would run before the primitive is called.

Every asymmetry between the twins is explained here, once, and nowhere else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from omniq._threads import THREADS, ThreadHandle
from omniq.exceptions import TaskTimeout

T = TypeVar("T")

# How long a cancelled coroutine task gets to unwind before it is abandoned.
_CANCEL_GRACE = 1.0


def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (also for callable objects)."""
    try:
        return _is_coroutine_function(fn)
    except TypeError:  # an unhashable callable: not cached
        return _is_coroutine_function.__wrapped__(fn)


@functools.lru_cache(maxsize=1024)
def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    # Cached: task functions are few and asked about once per task run.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  (a callable instance's method)
    )


# Results that are never awaitable: both twins return them without asking.
_PLAIN_RESULTS = frozenset((type(None), str, int, float, bool, list, dict, tuple))


def _timeout_message(timeout: float) -> str:
    return f"task exceeded its timeout of {timeout:g}s"


# --------------------------------------------------------------------------- async half


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop (twin: ``time.sleep``)."""
    await asyncio.sleep(seconds)


class AsyncEvent:
    """A flag to wait on with a timeout (twin: ``threading.Event``).

    ``asyncio.Event.wait`` has no timeout, and ``asyncio.wait_for`` around it costs a
    task of its own per wait (a worker pool waits once per loop turn), so this keeps
    its own waiters: a future each, and a timer when there is a timeout. ``wait``
    returns False on timeout, as ``threading.Event.wait`` does. A loop's futures are
    not thread-safe, while ``threading.Event.set`` may be called from any thread (a
    producer thread, a signal handler): so ``set`` from another thread is handed to
    the owning loop. Create it inside the running loop.
    """

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[bool]] = []
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()

    def set(self) -> None:
        """Set the flag and wake every waiter; safe to call from any thread."""
        if threading.get_ident() == self._thread_id:
            self._set_here()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._set_here)

    def _set_here(self) -> None:
        if self._flag:
            return
        self._flag = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        """Reset the flag."""
        self._flag = False

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` passes; return the flag."""
        if self._flag:
            return True
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else self._loop.call_later(timeout, _expire, waiter)
        try:
            flag: bool = await waiter
        finally:
            self._waiters.remove(waiter)
            if timer is not None:
                timer.cancel()
        return flag


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


AsyncLock = asyncio.Lock
"""Mutual exclusion between coroutines (twin: ``threading.Lock``)."""


class AsyncWaiter:
    """One result that one unit waits for and another hands over (twin: on an Event).

    Create it in the waiting unit's loop; :meth:`set` or :meth:`fail` once, from the
    same loop (the async twin's units all run there).
    """

    def __init__(self) -> None:
        self._future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def set(self, value: Any) -> None:
        """Hand over the result."""
        if not self._future.done():
            self._future.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Hand over an exception instead; :meth:`wait` raises it."""
        if not self._future.done():
            self._future.set_exception(error)

    async def wait(self) -> Any:
        """The result (or raise the exception) once handed over.

        Shielded: a waiter whose task is cancelled can still be handed its result,
        which :meth:`handed` then tells.
        """
        return await asyncio.shield(self._future)

    def handed(self) -> Any:
        """The result handed over so far, or ``None`` (nothing yet, or an exception)."""
        if self._future.done() and not self._future.cancelled():
            return None if self._future.exception() else self._future.result()
        return None


class AsyncThreadGuard:
    """Guards state shared by concurrent units (twin: ``threading.Lock``).

    In the async twin every unit runs on the one event-loop thread and the guarded
    blocks never await, so there is nothing to exclude: this is a no-op.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


AsyncHandle: TypeAlias = "asyncio.Task[Any]"
"""A unit of concurrent work started by :func:`aspawn` (twin: ``threading.Thread``)."""

AsyncCancelled: tuple[type[BaseException], ...] = (asyncio.CancelledError,)
"""What cancellation raises, to re-raise before catching everything (twin: nothing)."""


def aspawn(fn: Callable[..., Any], *args: Any, name: str | None = None) -> AsyncHandle:
    """Start ``fn(*args)`` concurrently as an asyncio task (twin: a daemon thread).

    The task copies the current contextvars context, as a thread started by the
    blocking twin does.
    """
    return asyncio.get_running_loop().create_task(fn(*args), name=name)


ASYNC_SLOTS_GO_ON = False
"""Whether a pool's slot goes on to the next ready task itself (twin: ``SLOTS_GO_ON``).

An asyncio task costs little to start and owns the context its task runs in, so each
task gets a task of its own. Starting a task on a thread is a wake-up of another
thread each way, so the blocking twin's slot keeps its thread and goes on (running
each task in a fresh copy of the thread's context: see :func:`run_isolated`).
"""


async def arun_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """``await fn(*args)``: a spawned asyncio task has a context of its own already.

    Twin: ``fn(*args)`` in a fresh copy of the thread's context, so that what one
    task sets in a contextvar never reaches the next task its slot runs.
    """
    return await fn(*args)


async def ajoin(handles: Sequence[AsyncHandle], timeout: float | None = None) -> int:
    """Wait for ``handles`` to finish, at most ``timeout`` seconds; return how many still run."""
    pending = [handle for handle in handles if not handle.done()]
    if not pending:
        return 0
    _, still_running = await asyncio.wait(pending, timeout=timeout)
    return len(still_running)


def acancel(handle: AsyncHandle) -> None:
    """Ask a spawned unit to stop: the task is cancelled (twin: a thread cannot be)."""
    handle.cancel()


async def arun_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call off the event loop, on a worker thread (twin: call it)."""
    return await asyncio.to_thread(fn, *args)


async def _await_with_timeout(awaitable: Any, timeout: float | None) -> Any:
    if timeout is None:  # nothing to bound: no task of its own (about 16 µs a call)
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()  # we are being cancelled ourselves: take the task down with us
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_GRACE)
        raise TaskTimeout(_timeout_message(timeout or 0.0))
    return task.result()


def _run_on_daemon_thread(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> asyncio.Future[Any]:
    # omniq's thread cache, not the loop's default executor: a timed-out blocking
    # function cannot be killed, and an abandoned call must not hold one of a small
    # executor's few threads (nor keep the interpreter from exiting); the cache
    # starts another thread instead.
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def runner() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args, **kwargs), None)
        except BaseException as error:  # handed to the awaiting task
            outcome = (None, error)
        # An abandoned call (timed out) may end after its loop closed: nobody waits then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    THREADS.submit(runner, name=f"omniq-call-{fn!r:.40}")  # runs in a copy of our context
    return future


async def arun_callable(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], timeout: float | None
) -> Any:
    """Run a task function, coroutine or plain, with an optional timeout.

    A coroutine function runs on the event loop and is cancelled at the timeout.
    A plain function runs on its own thread; at the timeout it is abandoned (a
    thread cannot be killed) and ``TaskTimeout`` is raised all the same.
    """
    if is_coroutine_function(fn):
        return await _await_with_timeout(fn(*args, **kwargs), timeout)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    result = await _await_with_timeout(
        asyncio.shield(_run_on_daemon_thread(loop, fn, args, kwargs)), timeout
    )
    if type(result) in _PLAIN_RESULTS:  # most results: no need to ask if it is awaitable
        return result
    if inspect.isawaitable(result):  # a plain callable that returned an awaitable
        remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
        result = await _await_with_timeout(result, remaining)
    return result


async def aresolve_future(future: concurrent.futures.Future[T]) -> T:
    """Wait for a future that another thread resolves, such as a process pool's job.

    Twin: ``future.result()``. The event loop goes on meanwhile; cancelling the waiting
    task cancels the future only if its work has not started.
    """
    return await asyncio.wrap_future(future)


def adaemon_sqlite(connecting: T) -> T:
    """Mark an aiosqlite connection's thread as a daemon before it starts; returns it.

    From aiosqlite 0.22 on that thread is not a daemon, so a facade that was never
    closed (the spec's Quick Start) would keep the interpreter from exiting. Work in
    flight at exit is cut off the way a crash would cut it: SQLite rolls it back.
    Twin: ``sqlite3`` has no thread.
    """
    thread = getattr(connecting, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    return connecting


async def arun_sqlite(conn: Any, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` whole on an aiosqlite connection's own thread.

    One hop for a whole operation, however many statements it has, instead of one
    per statement: aiosqlite runs every call of a connection on that connection's
    thread, in order (``Connection._execute``, stable since aiosqlite 0.17). Twin: the
    blocking storage holds a ``sqlite3`` connection and calls ``fn(conn, *args)``.
    """
    result: T = await conn._execute(fn, conn._conn, *args)
    return result


async def acall_hook(fn: Callable[..., Any], *args: Any) -> None:
    """Call a user's hook, awaiting it if it is a coroutine function (twin: its result,
    if awaitable, runs on an event loop of its own)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


def ainstall_signal_handlers(on_signal: Callable[[int], None]) -> Callable[[], None]:
    """Call ``on_signal(signum)`` on SIGINT/SIGTERM; return a function that undoes it.

    The async twin uses the loop's handlers (they run on the loop, where the
    callback may touch loop objects). Outside the main thread, or where the loop
    cannot take signal handlers, nothing is installed. Undoing it puts back the
    handlers that were there before, as the blocking twin does (the loop's own
    removal would leave the default, which kills the process on SIGTERM).
    """
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed[signum] = previous

    def restore() -> None:
        for signum, previous in installed.items():
            loop.remove_signal_handler(signum)
            if previous is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, previous)

    return restore


# ------------------------------------------------------------------------ blocking half


sleep = time.sleep

Event = threading.Event
"""Already has ``wait(timeout) -> bool``, the shape ``AsyncEvent`` copies."""

Lock = threading.Lock
ThreadGuard = threading.Lock


class Waiter:
    """One result that one thread waits for and another hands over (twin of ``AsyncWaiter``).

    On a bare lock, held from the start and released by the hand-over, rather than a
    ``threading.Event``: an Event is a Condition written in Python, whose every wait
    allocates a lock of its own, and group commit makes one waiter per enqueue.
    """

    def __init__(self) -> None:
        self._released = threading.Lock()
        self._released.acquire()  # held until the result is handed over
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def set(self, value: Any) -> None:
        """Hand over the result (once)."""
        self._hand_over(value, None)

    def fail(self, error: BaseException) -> None:
        """Hand over an exception instead (once); :meth:`wait` raises it."""
        self._hand_over(None, error)

    def _hand_over(self, value: Any, error: BaseException | None) -> None:
        if not self._done:  # a later hand-over is ignored, as AsyncWaiter's future does
            self._value, self._error = value, error
            self._done = True
            self._released.release()

    def wait(self) -> Any:
        """The result (or raise the exception) once handed over; waits in slices (Ctrl-C)."""
        if not self._done:
            while not self._released.acquire(timeout=0.2):
                pass
            self._released.release()  # a later wait() returns at once
        if self._error is not None:
            raise self._error
        return self._value

    def handed(self) -> Any:
        """The result handed over so far, or ``None`` (nothing yet, or an exception)."""
        return self._value if self._done and self._error is None else None


Handle: TypeAlias = ThreadHandle

Cancelled: tuple[type[BaseException], ...] = ()
"""Threads are never cancelled, so ``except Cancelled`` matches nothing."""


def spawn(fn: Callable[..., Any], *args: Any, name: str | None = None) -> ThreadHandle:
    """Start ``fn(*args)`` on a (reused) daemon thread, in a copy of the current context.

    ``threading.Thread`` does not copy contextvars (asyncio tasks do), so without
    the copy the log correlation id would not follow a task onto its thread.
    """
    return THREADS.submit(fn, *args, name=name)


SLOTS_GO_ON = True
"""A pool's slot runs the next ready task on its own thread (see ``ASYNC_SLOTS_GO_ON``)."""


def run_isolated(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh copy of the current context (see :func:`arun_isolated`)."""
    return contextvars.copy_context().run(fn, *args)


def join(handles: Sequence[ThreadHandle], timeout: float | None = None) -> int:
    """Wait for ``handles`` to finish, at most ``timeout`` seconds; return how many still run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in handles:
        # Join in slices so Ctrl-C reaches the main thread while it waits.
        while thread.is_alive():
            remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if remaining <= 0:
                break
            thread.join(remaining)
    return sum(1 for thread in handles if thread.is_alive())


def cancel(handle: ThreadHandle) -> None:
    """Threads cannot be cancelled: the blocking twin of :func:`acancel` does nothing."""
    del handle


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Already on a thread of our own: just call ``fn``."""
    return fn(*args)


def run_callable(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], timeout: float | None
) -> Any:
    """Run a task function on this worker thread, with an optional timeout.

    A coroutine function gets an event loop of its own on this thread
    (``asyncio.run``) and is cancelled at the timeout. A plain function without a
    timeout is called directly; with one, it runs on a helper thread that is
    abandoned at the timeout (a thread cannot be killed) and ``TaskTimeout`` is
    raised all the same.
    """
    if is_coroutine_function(fn):
        return asyncio.run(_await_with_timeout(fn(*args, **kwargs), timeout))
    if timeout is None:
        result = fn(*args, **kwargs)
    else:
        result = _call_with_thread_timeout(fn, args, kwargs, timeout)
    if type(result) in _PLAIN_RESULTS:  # most results: no need to ask if it is awaitable
        return result
    if inspect.isawaitable(result):
        return asyncio.run(_await_with_timeout(result, timeout))
    return result


def _call_with_thread_timeout(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], timeout: float
) -> Any:
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            outcome.append(fn(*args, **kwargs))
        except BaseException as error:
            failure.append(error)

    helper = spawn(runner, name=f"omniq-call-{fn!r:.40}")
    helper.join(timeout)
    if helper.is_alive():
        raise TaskTimeout(_timeout_message(timeout))
    if failure:
        raise failure[0]
    return outcome[0]


def resolve_future(future: concurrent.futures.Future[T]) -> T:
    """Block this thread until ``future`` is resolved; its result (or its exception)."""
    return future.result()


def daemon_sqlite(connecting: T) -> T:
    """A ``sqlite3`` connection has no thread of its own: nothing to do."""
    return connecting


def run_sqlite(conn: Any, fn: Callable[..., T], *args: Any) -> T:
    """Already holding a ``sqlite3`` connection: call ``fn(conn, *args)``."""
    return fn(conn, *args)


def call_hook(fn: Callable[..., Any], *args: Any) -> None:
    """Call a user's hook; a coroutine hook runs to its end on an event loop of its own
    (this thread has none running: the blocking twin's threads never do)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        asyncio.run(_await_with_timeout(result, None))


def install_signal_handlers(on_signal: Callable[[int], None]) -> Callable[[], None]:
    """Call ``on_signal(signum)`` on SIGINT/SIGTERM; return a function that undoes it.

    ``signal.signal`` works only in the main thread: elsewhere nothing is installed
    (an app that runs the pool on another thread stops it with ``stop()``).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {
        signum: signal.signal(signum, lambda received, _frame: on_signal(received))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
