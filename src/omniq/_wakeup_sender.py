"""The sending side of the wake-up channel (see ``omniq._wakeup``): a datagram to each listener.

A producer sends after every commit, so this is on the enqueue hot path: one
``stat`` of the directory, then one non-blocking ``send`` per listening process.
The listing of the directory is kept while its inode and mtime are unchanged, as
long as it was taken well after that mtime (a change in the same timestamp tick
would not move it); it is taken again at least every 10 s. Each listener gets a
connected socket of its own, so one that stops reading fills only that socket's
buffer and never delays the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path

from omniq import logging as omniq_logging

DUE = "due"
DONE = "done"
NAME = re.compile(r"(due|done)-([0-9]{1,10})-([0-9a-f]{8})")
"""A listener's socket: ``{topic}-{pid}-{random}``."""

ANY = b"*"  # the "done" datagram when the ids are not known (or were dropped)
_SUN_PATH_MAX = (108 if sys.platform.startswith("linux") else 104) - 1  # bytes, NUL excluded
_RACY_NS = 1_000_000_000  # a listing taken this soon after the directory changed is not trusted
_MAX_AGE_NS = 10_000_000_000  # list again at least this often, whatever the mtime says
STALE_GRACE = 2.0  # a refusing socket younger than this may be one being bound: left alone


class SocketPaths:
    """Addresses of sockets in one directory, through ``/proc/self/fd/N/`` if too long.

    ``sun_path`` holds 107 bytes on Linux (103 elsewhere); a longer path is reached
    through a file descriptor of the directory. Not thread-safe: its owner locks.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def address(self, name: str) -> str:
        """Where to bind or connect to the socket ``name``; ``OSError`` if impossible."""
        path = str(self.directory / name)
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            return path
        if not os.path.isdir("/proc/self/fd"):
            raise OSError(f"{self.directory} is too long a path for a Unix socket")
        if self._fd is None:
            self._fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._fd}/{name}"

    def check(self, inode: int) -> None:
        """Forget the directory descriptor if the directory was replaced meanwhile."""
        if self._fd is not None and os.fstat(self._fd).st_ino != inode:
            self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def remove_if_stale(directory: Path, name: str) -> None:
    """Unlink a socket that refused a connection, unless it is young (maybe being bound).

    A bind creates the file a moment before the socket accepts datagrams.
    """
    path = directory / name
    with contextlib.suppress(OSError):
        if time.time() - os.lstat(path).st_mtime > STALE_GRACE:
            os.unlink(path)


class Sender:
    """Sends one datagram to each listening socket of a topic; thread-safe, never raises."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.skip: Collection[str] = frozenset()  # this process's own sockets
        self._lock = threading.Lock()
        self._paths = SocketPaths(directory)
        self._listing: tuple[int, int, int] | None = None  # inode, mtime_ns, listed_ns
        self._names: dict[str, list[str]] = {DUE: [], DONE: []}
        self._targets: dict[str, socket.socket] = {}  # connected, one per listener
        self._refused: set[str] = set()  # not tried again before the next listing
        self._overflowed: set[str] = set()  # its queue was full: the next datagram says ANY
        self._complained = False

    def send(self, topic: str, message: bytes) -> None:
        """``message`` to every socket of ``topic`` but ours (a full one is skipped)."""
        try:
            with self._lock:
                for name in self._current(topic):
                    if name not in self.skip:
                        self._send_one(name, topic, message)
        except Exception as error:  # a wake-up must never fail the write it follows
            if not self._complained:
                self._complained = True
                omniq_logging.get_logger().debug(f"wake-up in {self.directory} failed: {error}")

    def close(self) -> None:
        """Close every socket (in a forked child: the parent's copies)."""
        for sock in self._targets.values():
            with contextlib.suppress(OSError):
                sock.close()
        self._targets.clear()
        self._paths.close()

    def _current(self, topic: str) -> list[str]:
        """The socket names of ``topic``, listed again when the directory may have changed."""
        try:
            info = os.stat(self.directory)
        except OSError:  # nobody ever listened here
            self._listing = None
            return []
        now = time.time_ns()
        listing = self._listing
        if (
            listing is None
            or listing[:2] != (info.st_ino, info.st_mtime_ns)
            or listing[2] - listing[1] < _RACY_NS  # a change could share that mtime
            or now - listing[2] > _MAX_AGE_NS
        ):
            self._relist(info, now)
        return self._names[topic]

    def _relist(self, info: os.stat_result, now: int) -> None:
        self._paths.check(info.st_ino)
        names: dict[str, list[str]] = {DUE: [], DONE: []}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                match = NAME.fullmatch(entry.name)
                if match is not None and not entry.is_symlink():  # never followed
                    names[match.group(1)].append(entry.name)
        present = {*names[DUE], *names[DONE]}
        for name in [name for name in self._targets if name not in present]:
            self._targets.pop(name).close()
        self._names = names
        self._listing = (info.st_ino, info.st_mtime_ns, now)
        self._refused.clear()
        self._overflowed &= present

    def _send_one(self, name: str, topic: str, message: bytes) -> None:
        sock = self._targets.get(name) or self._connect(name)
        if sock is None:
            return
        data = ANY if topic == DONE and name in self._overflowed else message
        try:
            sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:  # its queue is full: that process is awake anyway
            if topic == DONE:
                self._overflowed.add(name)  # ids were dropped: the next datagram says ANY
            return
        except OSError as error:  # refused: its process is gone
            self._targets.pop(name).close()
            self._refused.add(name)
            if isinstance(error, ConnectionRefusedError):
                remove_if_stale(self.directory, name)
            return
        self._overflowed.discard(name)

    def _connect(self, name: str) -> socket.socket | None:
        if name in self._refused:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self._paths.address(name))
        except OSError as error:
            sock.close()
            self._refused.add(name)
            if isinstance(error, ConnectionRefusedError):
                remove_if_stale(self.directory, name)
            return None
        self._targets[name] = sock
        return sock
