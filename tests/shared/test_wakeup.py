"""The wake-up channel (``omniq._wakeup``) on its own: across processes, after deaths and forks.

The storages' use of it is tested in the twin suite (``tests/_async/test_wakeups.py``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path

import pytest

from omniq import _wakeup, _wakeup_sender
from omniq._wakeup import channel_for
from omniq.records import Transition

pytestmark = pytest.mark.skipif(not _wakeup.HAS_UNIX_SOCKETS, reason="no Unix sockets here")

WAIT = 30.0  # generous: a wake-up takes milliseconds

NOTIFY = """
import sys
from omniq._wakeup import channel_for
channel = channel_for(sys.argv[1])
channel.notify_due()
channel.notify_finished(["a", "b"])
"""

LISTEN = """
import sys, threading
from omniq._wakeup import channel_for
woken = threading.Event()
assert channel_for(sys.argv[1]).subscribe(woken.set)
print("ready", flush=True)
print("woken" if woken.wait(60) else "not woken", flush=True)
sys.stdin.read()
"""


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Recorder:
    """A subscriber that keeps what it was called with."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.calls: list[Collection[str] | None] = []

    def due(self) -> None:
        self.woken.set()

    def finished(self, task_ids: Collection[str] | None) -> None:
        self.calls.append(None if task_ids is None else set(task_ids))
        self.woken.set()


def listener_in_another_process(directory: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", LISTEN, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def sockets(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def test_another_process_wakes_the_subscribers(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    channel = channel_for(directory)
    due, finished = Recorder(), Recorder()
    try:
        assert channel.subscribe(due.due)
        assert channel.subscribe_finished(finished.finished)
        subprocess.run([sys.executable, "-c", NOTIFY, str(directory)], check=True, timeout=60)
        assert due.woken.wait(WAIT)
        assert finished.woken.wait(WAIT)
        assert {"a", "b"} in finished.calls  # the datagram names the finished tasks
    finally:
        channel.unsubscribe(due.due)
        channel.unsubscribe_finished(finished.finished)


def test_the_directory_and_its_sockets_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    channel = channel_for(directory)
    recorder = Recorder()
    old_umask = os.umask(0)  # whatever the umask says
    try:
        assert channel.subscribe(recorder.due)
    finally:
        os.umask(old_umask)
        channel.unsubscribe(recorder.due)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [name] = sockets(directory)
    assert re.fullmatch(rf"due-{os.getpid()}-[0-9a-f]{{8}}", name)
    info = (directory / name).lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600


def test_a_producer_reaches_a_listener_bound_in_the_same_mtime_tick(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    producer = channel_for(directory)
    first = listener_in_another_process(directory)
    tick = time.time_ns()
    os.utime(directory, ns=(tick, tick))
    producer.notify_due()  # lists the directory (one socket) and caches the listing
    second = listener_in_another_process(directory)
    # As if the second bind fell in the same timestamp tick: the mtime says "unchanged".
    os.utime(directory, ns=(tick, tick))
    producer.notify_due()
    try:
        for process in (first, second):
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "woken"
    finally:
        for process in (first, second):
            process.communicate("", timeout=60)


def test_a_dead_listeners_socket_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wakeup_sender, "_MAX_AGE_NS", 0)  # every send lists the directory again
    directory = tmp_path / "wakeup"
    process = listener_in_another_process(directory)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    [stale] = sockets(directory)
    assert stale.startswith(f"due-{process.pid}-")
    producer = channel_for(directory)
    producer.notify_due()  # refused, but young: it may be a socket being bound right now
    assert sockets(directory) == [stale]
    old = time.time() - 60
    os.utime(directory / stale, (old, old))
    producer.notify_due()  # the next listing tries it again: old and refusing, it goes
    assert sockets(directory) == []


def test_a_new_listener_sweeps_the_sockets_of_dead_processes(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    process = listener_in_another_process(directory)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    [stale] = sockets(directory)
    old = time.time() - 60
    os.utime(directory / stale, (old, old))
    recorder = Recorder()
    channel = channel_for(directory)
    try:
        assert channel.subscribe(recorder.due)
        [mine] = sockets(directory)
        assert mine.startswith(f"due-{os.getpid()}-")
    finally:
        channel.unsubscribe(recorder.due)


def test_a_listener_that_does_not_read_never_blocks_a_producer(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    directory.mkdir(mode=0o700)
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a stuck process's socket
    deaf.bind(str(directory / "done-1-0000beef"))
    deaf.setblocking(False)
    producer = channel_for(directory)
    try:
        for number in range(5000):  # far beyond its queue: each send must return at once
            producer.notify_finished([f"t{number}"])
        received = []
        while True:
            try:
                received.append(deaf.recv(1024))
            except BlockingIOError:
                break
        assert received and received[0] == b"=t0"
        producer.notify_finished(["late"])
        # Ids were dropped while its queue was full: the next datagram says "any task".
        assert deaf.recv(1024) == b"*"
        producer.notify_finished(["later"])
        assert deaf.recv(1024) == b"=later"
    finally:
        deaf.close()


def test_a_symlink_named_like_a_socket_is_not_followed(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    directory.mkdir(mode=0o700)
    elsewhere = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    elsewhere.bind(str(tmp_path / "someone-elses.sock"))
    elsewhere.setblocking(False)
    (directory / "due-1-0000cafe").symlink_to(tmp_path / "someone-elses.sock")
    try:
        channel_for(directory).notify_due()
        with pytest.raises(BlockingIOError):
            elsewhere.recv(16)
    finally:
        elsewhere.close()


def test_a_path_too_long_for_a_unix_socket_still_works(tmp_path: Path) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("long socket paths go through /proc/self/fd (Linux)")
    directory = tmp_path / ("x" * 60) / ("y" * 60) / "wakeup"
    assert len(os.fsencode(directory / "done-4194304-00000000")) > 107
    recorder = Recorder()
    channel = channel_for(directory)
    try:
        assert channel.subscribe(recorder.due)
        subprocess.run([sys.executable, "-c", NOTIFY, str(directory)], check=True, timeout=60)
        assert recorder.woken.wait(WAIT)
    finally:
        channel.unsubscribe(recorder.due)


def test_without_a_usable_directory_subscribing_says_poll(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    directory.write_text("not a directory")
    recorder = Recorder()
    channel = channel_for(directory)
    try:
        assert channel.subscribe_finished(recorder.finished) is False
        channel.notify_finished(["t1"])  # never raises; this process's subscribers still hear
        assert recorder.calls == [{"t1"}]
    finally:
        channel.unsubscribe_finished(recorder.finished)
    assert directory.read_text() == "not a directory"


def test_outcomes_wake_the_right_topics(tmp_path: Path) -> None:
    channel = channel_for(tmp_path / "wakeup")
    due, finished = Recorder(), Recorder()
    channel.subscribe(due.due)
    channel.subscribe_finished(finished.finished)
    try:
        retry = Transition(status="pending", now=1.0, eta=2.0)
        done = Transition(status="completed", now=1.0, result="3")
        channel.notify_settled([("a", "t", done), ("b", "t", done)], [True, False])
        assert finished.calls == [{"a"}] and not due.woken.is_set()  # b was not applied
        channel.notify_settled([("c", "t", retry)], [True])
        assert due.woken.is_set() and finished.calls == [{"a"}]
    finally:
        channel.unsubscribe(due.due)
        channel.unsubscribe_finished(finished.finished)


def test_an_unused_socket_goes_after_its_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wakeup, "LINGER", 0.1)
    directory = tmp_path / "wakeup"
    channel = channel_for(directory)
    recorder = Recorder()
    assert channel.subscribe(recorder.due)
    [name] = sockets(directory)
    channel.unsubscribe(recorder.due)
    wait_until(lambda: sockets(directory) == [], "the idle socket to go")
    assert channel.subscribe(recorder.due)  # a new one, under a new name
    try:
        assert sockets(directory) != [name] and len(sockets(directory)) == 1
    finally:
        channel.unsubscribe(recorder.due)


def _forked_child(
    directory: str, parent_fd: int, parent_inode: int, pipe: multiprocessing.connection.Connection
) -> None:
    channel = channel_for(directory)
    try:  # the fd number may have been reused meanwhile: compare the inode
        inherited = os.fstat(parent_fd).st_ino == parent_inode
    except OSError:
        inherited = False
    woken = threading.Event()
    subscribed = channel.subscribe(woken.set)
    names = [name for name in os.listdir(directory) if name.startswith(f"due-{os.getpid()}-")]
    pipe.send((inherited, subscribed, names))
    channel.notify_due()  # reaches the parent
    pipe.send(woken.wait(WAIT))  # the parent's notify reaches the child's own socket
    pipe.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_closes_the_parents_socket_and_listens_on_its_own(tmp_path: Path) -> None:
    directory = tmp_path / "wakeup"
    channel = channel_for(directory)
    recorder = Recorder()
    assert channel.subscribe(recorder.due)
    [parent_socket] = sockets(directory)
    parent_fd = channel._listeners[_wakeup.DUE].sock.fileno()
    parent_inode = os.fstat(parent_fd).st_ino
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_forked_child, args=(str(directory), parent_fd, parent_inode, theirs)
    )
    try:
        child.start()
        assert ours.poll(WAIT)
        inherited, subscribed, names = ours.recv()
        assert not inherited, "the child kept the parent's socket open"
        assert subscribed and len(names) == 1  # a socket of its own, named with its pid
        assert recorder.woken.wait(WAIT)  # the child's notify reached the parent
        channel.notify_due()
        assert ours.poll(WAIT) and ours.recv() is True
        child.join(WAIT)
        assert child.exitcode == 0
        assert parent_socket in sockets(directory)  # the child left the parent's socket alone
    finally:
        channel.unsubscribe(recorder.due)
        if child.is_alive():
            child.kill()


def test_postgres_payloads_split_ids_under_the_notify_limit() -> None:
    from omniq._postgres_sql import PAYLOAD_LIMIT, finished_payloads

    ids = [f"{number:036d}" for number in range(500)]
    payloads = finished_payloads(ids)
    assert len(payloads) > 1 and all(len(payload) < PAYLOAD_LIMIT for payload in payloads)
    assert [part for payload in payloads for part in payload.split(",")] == ids
    assert finished_payloads([]) == []
