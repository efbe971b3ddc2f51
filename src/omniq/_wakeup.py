"""Cross-process wake-ups on one machine: a Unix datagram socket per waiting process.

SQLite and the file store have no server to push changes, so without help a
worker in another process sees a new task only at its next poll. Here each
process that waits binds one datagram socket per topic in the store's wake-up
directory (0700; sockets 0600), named ``{topic}-{pid}-{random}``, and a daemon
thread reads it and calls the subscribers. After each commit a producer sends one
short datagram to every socket of the topic: never blocking (a full queue means
that process has wake-ups pending: it is awake anyway) and never raising (a
socket nobody holds any more is unlinked). Polling stays the safety net.

Topics: ``due`` (tasks were made pending: enqueued, released, retried, requeued,
recovered; workers look again) and ``done`` (tasks reached a final state: the
datagram names them, so a waiting ``get_result`` wakes for its own task only).

The sending side (the listing cache, one connected socket per listener) is in
``omniq._wakeup_sender``; this module is the listening side and the entry point.
A path too long for ``sun_path`` is reached through ``/proc/self/fd/N/``
(Linux); where that is impossible, on platforms without ``AF_UNIX``, or where the
directory cannot hold sockets, subscribing returns False and callers poll. A
forked child closes the parent's sockets and starts with no subscription.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeAlias

from omniq import logging as omniq_logging
from omniq._fs import DIR_MODE, FILE_MODE, ensure_private_dir
from omniq._wakeup_sender import ANY, DONE, DUE, NAME, Sender, SocketPaths, remove_if_stale
from omniq.exceptions import StorageError
from omniq.models import TaskStatus
from omniq.records import Transition

__all__ = [
    "DONE",
    "DUE",
    "HAS_UNIX_SOCKETS",
    "LINGER",
    "DueCallback",
    "FinishedCallback",
    "WakeupChannel",
    "channel_for",
]

DueCallback: TypeAlias = Callable[[], None]
FinishedCallback: TypeAlias = Callable[[Collection[str] | None], None]
"""Called with the ids of tasks that reached a final state, or ``None``: unknown which."""

LINGER = 10.0
"""Seconds a socket outlives its last subscriber, so the next one reuses it."""

HAS_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")
_RETRY_BIND = 30.0  # after a failed bind, subscribers poll this long before the next try
_MAX_IDS_BYTES = 4096  # task ids in one datagram; more: "some tasks finished"
_RECV_MAX = 65536
_SWEEP_MAX = 200  # entries a bind looks at for dead processes' sockets
_COALESCE = 0.001  # after a wake-up, a listener lets a burst queue up this long (fewer wakes)
_WOKEN = b"!"
_IDS = b"="  # followed by task ids, one per line


class _Listener:
    """The bound socket of one topic in this process, and the daemon thread reading it."""

    def __init__(self, channel: WakeupChannel, topic: str, sock: socket.socket, name: str) -> None:
        self.channel = channel
        self.topic = topic
        self.sock = sock
        self.name = name
        self.idle_since: float | None = None  # when its last subscriber left
        self.thread = threading.Thread(target=self._read, name=f"omniq-wakeup-{topic}", daemon=True)

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        try:
            while True:
                if not poller.poll(LINGER * 1000):
                    if self.channel.retire_if_idle(self):
                        return
                    continue
                batch: list[bytes] = []
                with contextlib.suppress(BlockingIOError):
                    while len(batch) < 64:  # what queued up meanwhile wakes once
                        batch.append(self.sock.recv(_RECV_MAX, socket.MSG_DONTWAIT))
                if batch:
                    self.channel.dispatch(self.topic, batch)
                time.sleep(_COALESCE)  # the datagrams wait in the queue: none is lost
        except (OSError, ValueError):  # closed under us: this listener is over
            return
        finally:
            self.channel.forget(self)


class WakeupChannel:
    """Wake-ups between the processes sharing one store directory; thread-safe.

    Get it with :func:`channel_for`: one per directory and process.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # subscriptions, listeners, their directory fd
        self._due: list[DueCallback] = []
        self._done: list[FinishedCallback] = []
        self._listeners: dict[str, _Listener] = {}
        self._paths = SocketPaths(self.directory)
        self._sender = Sender(self.directory)
        self._retry_bind_at = 0.0

    def __repr__(self) -> str:
        return f"WakeupChannel({str(self.directory)!r})"

    # ------------------------------------------------------------------ listening

    def subscribe(self, callback: DueCallback) -> bool:
        """Call ``callback()`` when any process makes a task pending; True if cross-process."""
        return self._subscribe(DUE, callback)

    def unsubscribe(self, callback: DueCallback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._unsubscribe(DUE, callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)`` when tasks finish in any process; True if cross-process."""
        return self._subscribe(DONE, callback)

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._unsubscribe(DONE, callback)

    def _callbacks(self, topic: str) -> list[DueCallback] | list[FinishedCallback]:
        return self._due if topic == DUE else self._done

    def _subscribe(self, topic: str, callback: DueCallback | FinishedCallback) -> bool:
        self._check_pid()
        with self._lock:
            # Kept even without a socket: this process's own writes still call it.
            self._callbacks(topic).append(callback)  # type: ignore[arg-type]
            listener = self._listeners.get(topic)
            if listener is not None:
                listener.idle_since = None
                return True
            if not HAS_UNIX_SOCKETS or time.monotonic() < self._retry_bind_at:
                return False
            try:
                self._start_listener(topic, idle_since=None)
            except (OSError, StorageError) as error:  # StorageError: _fs refused the directory
                self._retry_bind_at = time.monotonic() + _RETRY_BIND
                omniq_logging.get_logger().debug(
                    f"no cross-process wake-ups in {self.directory} ({error}): polling instead"
                )
                return False
            return True

    def _unsubscribe(self, topic: str, callback: DueCallback | FinishedCallback) -> None:
        with self._lock:
            callbacks = self._callbacks(topic)
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)  # type: ignore[arg-type]
            listener = self._listeners.get(topic)
            if listener is not None and not callbacks:
                listener.idle_since = time.monotonic()

    def _start_listener(self, topic: str, idle_since: float | None) -> None:
        """Bind a new socket for ``topic`` and start reading it (``_lock`` held)."""
        self._prepare_directory()
        name = f"{topic}-{os.getpid()}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self._paths.address(name))
            os.chmod(self.directory / name, FILE_MODE)
        except BaseException:
            sock.close()
            raise
        listener = _Listener(self, topic, sock, name)
        listener.idle_since = idle_since
        self._listeners[topic] = listener
        self._sender.skip = frozenset(each.name for each in self._listeners.values())
        listener.thread.start()
        with contextlib.suppress(OSError):  # housekeeping: never a reason to poll
            self._sweep()

    def _prepare_directory(self) -> None:
        """Create the directory 0700; refuse a symlink, a non-directory, another's directory."""
        ensure_private_dir(self.directory)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{self.directory} is not a directory")
        if info.st_uid != os.getuid():
            raise PermissionError(f"{self.directory} belongs to another user")
        if stat.S_IMODE(info.st_mode) != DIR_MODE:
            os.chmod(self.directory, DIR_MODE)

    def _sweep(self) -> None:
        """Unlink the sockets of processes that died without removing theirs."""
        with os.scandir(self.directory) as entries:
            names = [entry.name for _, entry in zip(range(_SWEEP_MAX), entries, strict=False)]
        for name in names:
            match = NAME.fullmatch(name)
            if match is None or _alive(int(match.group(2))):
                continue
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                probe.connect(self._paths.address(name))
            except ConnectionRefusedError:
                remove_if_stale(self.directory, name)
            except OSError:
                pass
            finally:
                probe.close()

    def retire_if_idle(self, listener: _Listener) -> bool:
        """Whether ``listener``'s thread should end; its socket is closed if so.

        Called by that thread every ``LINGER`` seconds: a listener without
        subscribers for that long is closed; one whose socket file disappeared
        (the directory was wiped) is replaced by a new one.
        """
        with self._lock:
            if self._listeners.get(listener.topic) is not listener:
                return True
            idle = listener.idle_since
            if idle is not None and time.monotonic() - idle >= LINGER:
                self._drop_listener(listener, unlink=True)
                return True
            if os.path.exists(self.directory / listener.name):
                return False
            try:
                self._start_listener(listener.topic, idle_since=idle)
            except (OSError, StorageError):
                return False  # keep the old one: polling covers the gap
            listener.sock.close()
            return True

    def forget(self, listener: _Listener) -> None:
        """``listener``'s thread ended: a later subscriber binds a new socket."""
        with self._lock:
            if self._listeners.get(listener.topic) is listener:
                self._drop_listener(listener, unlink=True)

    def _drop_listener(self, listener: _Listener, unlink: bool) -> None:
        del self._listeners[listener.topic]
        self._sender.skip = frozenset(each.name for each in self._listeners.values())
        listener.sock.close()
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / listener.name)

    def dispatch(self, topic: str, batch: Sequence[bytes]) -> None:
        """Call the subscribers of ``topic`` once for the datagrams in ``batch``."""
        if topic == DUE:
            self._call_due()
            return
        ids: set[str] | None = set()
        for data in batch:
            if ids is not None and data.startswith(_IDS):
                ids.update(data[1:].decode("utf-8", "replace").split("\n"))
            else:
                ids = None  # ANY, or a probe: every waiter looks
        self._call_done(ids)

    def _call_due(self) -> None:
        with self._lock:
            callbacks = list(self._due)
        for callback in callbacks:
            _call(callback)

    def _call_done(self, ids: Collection[str] | None) -> None:
        with self._lock:
            callbacks = list(self._done)
        for callback in callbacks:
            _call(callback, ids)

    # ------------------------------------------------------------------ producing

    def notify_due(self) -> None:
        """After a commit that made tasks pending: wake the workers of every process."""
        if HAS_UNIX_SOCKETS:
            self._check_pid()
            self._sender.send(DUE, _WOKEN)
        self._call_due()

    def notify_finished(self, task_ids: Collection[str]) -> None:
        """After a commit that finished ``task_ids``: wake whoever waits for them."""
        if not task_ids:
            return
        if HAS_UNIX_SOCKETS:
            self._check_pid()
            payload = _IDS + "\n".join(task_ids).encode("utf-8", "replace")
            self._sender.send(DONE, payload if len(payload) <= _MAX_IDS_BYTES else ANY)
        self._call_done(task_ids)

    def notify_settled(
        self, items: Sequence[tuple[str, str, Transition]], applied: Sequence[bool]
    ) -> None:
        """After a commit of outcomes (``applied``: which of ``items`` changed a task)."""
        due = False
        finished: list[str] = []
        for (task_id, _, transition), changed in zip(items, applied, strict=False):
            if not changed:
                continue
            if transition.status == TaskStatus.PENDING.value or transition.successor is not None:
                due = True
            if transition.is_final:
                finished.append(task_id)
        if due:
            self.notify_due()
        if finished:
            self.notify_finished(finished)

    # ------------------------------------------------------------------ processes

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (by C code)
            self.after_fork()

    def after_fork(self) -> None:
        """In a forked child: close the parent's sockets (its files stay) and start afresh.

        The child has none of the parent's threads, and its subscribers (the
        parent's pools) do not run in it: it starts with no subscription.
        """
        for listener in self._listeners.values():
            with contextlib.suppress(OSError):
                listener.sock.close()
        self._paths.close()
        self._sender.close()
        self._reset()

    def unlink_own(self) -> None:
        """Remove this process's socket files (at exit)."""
        if self._pid != os.getpid():
            return
        for listener in list(self._listeners.values()):
            with contextlib.suppress(OSError):
                os.unlink(self.directory / listener.name)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists here (another pid namespace's may look dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is someone else's
        return True
    return True


def _call(callback: Callable[..., None], *args: object) -> None:
    try:
        callback(*args)
    except Exception as error:  # one bad subscriber must not silence the others
        omniq_logging.log_storage_error("wake-up subscriber", error)


_channels: dict[str, WakeupChannel] = {}
_channels_lock = threading.Lock()


def channel_for(directory: str | os.PathLike[str]) -> WakeupChannel:
    """The wake-up channel of ``directory`` in this process (created on first use).

    Nothing touches the disk until a subscriber binds or a producer sends.
    """
    key = os.path.abspath(os.fspath(directory))
    with _channels_lock:
        channel = _channels.get(key)
        if channel is None:
            channel = _channels[key] = WakeupChannel(Path(key))
        return channel


def _after_fork_in_child() -> None:
    global _channels_lock
    _channels_lock = threading.Lock()  # a parent thread may have held it at the fork
    for channel in _channels.values():
        channel.after_fork()


def _unlink_at_exit() -> None:
    for channel in list(_channels.values()):
        channel.unlink_own()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_unlink_at_exit)
