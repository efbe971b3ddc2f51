"""PostgreSQL wake-ups: ``LISTEN`` connections that call the storage's subscribers.

Every write that makes a task pending notifies the schema's channel in its own
transaction, and every write that finishes tasks names them on a second channel
(``omniq._postgres_sql.finished_channel``). :class:`AsyncPostgresWakeups` runs one
listener per channel that has subscribers, each on a connection of its own (not
from the pool). A listener reconnects with backoff when its connection drops and
calls its subscribers after each (re)connection, since a notification sent while
it was not listening is lost. It also pings its server every few seconds under a
deadline: a half-open connection delivers no notification and raises no error, so
without the ping a listener would wait on it forever. A forked child starts with no
listener and no subscriber: the parent's are abandoned, never closed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from psycopg import sql

from omniq import logging as omniq_logging
from omniq._async.storage.postgres_connections import AsyncPostgresConnections, PgConnection
from omniq._concurrency import AsyncEvent, AsyncHandle, AsyncThreadGuard, acancel, ajoin, aspawn
from omniq._inherited import abandon_after_fork
from omniq._postgres_sql import channel_name, finished_channel
from omniq._secrets import redact
from omniq._wakeup import DONE, DUE, LINGER, FinishedCallback

LISTEN_SLICE = 0.5  # how long one wait for notifications lasts before the stop flag is read
PING_INTERVAL = 10.0  # seconds without a notification before the listener pings its server
RECONNECT_MIN, RECONNECT_MAX = 0.1, 10.0


class AsyncPostgresWakeups:
    """The subscribers of both channels, and the listeners that serve them."""

    def __init__(self, connections: AsyncPostgresConnections) -> None:
        self.connections = connections
        self.ping_interval = min(PING_INTERVAL, max(connections.timeout, LISTEN_SLICE))
        self._guard = AsyncThreadGuard()
        self._callbacks: list[Callable[[], None]] = []
        self._listener: AsyncHandle | None = None
        self._listener_stop: AsyncEvent | None = None
        # The finished channel's listener runs while someone waits, and LINGER s after.
        self._finished_callbacks: list[FinishedCallback] = []
        self._finished_listener: AsyncHandle | None = None
        self._finished_stop: AsyncEvent | None = None
        self._finished_idle_since: float | None = None
        self._conns: dict[str, PgConnection] = {}  # per topic: the listening connection
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        """In a forked child: drop the parent's listeners and subscribers, untouched."""
        if self._pid == os.getpid():
            return
        abandon_after_fork(
            (self._listener, self._listener_stop, self._finished_listener, self._finished_stop)
        )
        abandon_after_fork(dict(self._conns))
        self._guard = AsyncThreadGuard()
        self._callbacks = []
        self._finished_callbacks = []
        self._listener = self._listener_stop = None
        self._finished_listener = self._finished_stop = None
        self._finished_idle_since = None
        self._conns = {}
        self._pid = os.getpid()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a task is made pending; the first one starts a listener."""
        self._check_fork()
        with self._guard:
            self._callbacks.append(callback)
            if self._listener is None:
                stop = AsyncEvent()
                self._listener_stop = stop
                self._listener = aspawn(self._listen, stop, DUE, name="omniq-postgres-listener")

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (the listener runs until :meth:`close`)."""
        self._check_fork()
        with self._guard:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> None:
        """Call ``callback(task_ids)`` whenever tasks reach a final state.

        The first subscription starts the second listener; it stops ``LINGER``
        seconds after the last subscriber left.
        """
        self._check_fork()
        with self._guard:
            self._finished_callbacks.append(callback)
            self._finished_idle_since = None
            if self._finished_listener is None:
                stop = AsyncEvent()
                self._finished_stop = stop
                self._finished_listener = aspawn(
                    self._listen, stop, DONE, name="omniq-postgres-finished-listener"
                )

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``."""
        self._check_fork()
        with self._guard:
            if callback in self._finished_callbacks:
                self._finished_callbacks.remove(callback)
            if not self._finished_callbacks:
                self._finished_idle_since = time.monotonic()

    async def close(self) -> None:
        """Stop both listeners (waking them with a notification if they wait for one)."""
        self._check_fork()
        with self._guard:
            channel = self.connections.channel
            listeners = [
                (self._listener, self._listener_stop, channel),
                (self._finished_listener, self._finished_stop, finished_channel(channel)),
            ]
            self._listener = self._listener_stop = None
            self._finished_listener = self._finished_stop = None
        for listener, stop, name in listeners:
            if listener is not None and stop is not None:
                stop.set()
                acancel(listener)
                if channel:  # the listener may be waiting for a notification
                    await self._notify_now(name)
                await ajoin([listener], 5.0)

    async def _notify_now(self, channel: str) -> None:
        try:
            async with self.connections.connection("notify") as conn:
                await conn.execute("SELECT pg_notify(%s, '')", (channel,))
        except Exception as error:
            omniq_logging.log_storage_error("notify", error)

    def _retire_finished_listener(self, stop: AsyncEvent) -> bool:
        """Whether the finished listener should stop: nobody has waited for ``LINGER`` s."""
        with self._guard:
            idle = self._finished_idle_since
            if idle is None or time.monotonic() - idle < LINGER:
                return False
            if self._finished_stop is stop:
                self._finished_listener = self._finished_stop = None
        stop.set()
        return True

    def _wake(self, topic: str, payload: str | None = None) -> None:
        """Call the subscribers of ``topic``; finished tasks' ids are the ``payload``."""
        with self._guard:
            due = list(self._callbacks) if topic == DUE else []
            finished = list(self._finished_callbacks) if topic == DONE else []
        ids = payload.split(",") if payload else None  # none: unknown which (a reconnection)
        for callback in due:
            try:
                callback()
            except Exception as error:  # one bad subscriber must not stop the listener
                omniq_logging.log_storage_error("notify subscriber", error)
        for finished_callback in finished:
            try:
                finished_callback(ids)
            except Exception as error:
                omniq_logging.log_storage_error("notify subscriber", error)

    async def _listen(self, stop: AsyncEvent, topic: str) -> None:
        delay = RECONNECT_MIN
        dsn = self.connections.dsn
        while not stop.is_set():
            try:
                conn = await self.connections.connect()
            except Exception as error:
                omniq_logging.log_storage_error(
                    "listen", redact(f"{error} (retrying in {delay:g}s)", dsn)
                )
                await stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            with self._guard:
                self._conns[topic] = conn  # so that a forked child can leave it alone
            try:
                await self._serve(conn, stop, topic)
                delay = RECONNECT_MIN
            except Exception as error:  # the connection dropped or hung: reconnect
                if not stop.is_set():
                    omniq_logging.log_storage_error(
                        "listen", redact(f"{error} (reconnecting in {delay:g}s)", dsn)
                    )
            finally:
                with self._guard:
                    if self._conns.get(topic) is conn:
                        del self._conns[topic]
                await conn.close()
            if not stop.is_set():
                await stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _serve(self, conn: PgConnection, stop: AsyncEvent, topic: str) -> None:
        """LISTEN on ``conn`` and wake the subscribers until ``stop`` (or an error)."""
        deadline = self.connections.deadline
        with self.connections.watch.watch(conn, "listen", deadline):
            channel = channel_name(await self.connections.current_schema(conn))
            if topic == DONE:
                channel = finished_channel(channel)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._wake(topic)
        heard = time.monotonic()
        while not stop.is_set():
            async for note in conn.notifies(timeout=LISTEN_SLICE):
                heard = time.monotonic()
                if stop.is_set():
                    break
                self._wake(topic, note.payload)
            if topic == DONE and self._retire_finished_listener(stop):
                return
            if time.monotonic() - heard >= self.ping_interval and not stop.is_set():
                # A half-open connection is silent: make the server answer, or fail.
                with self.connections.watch.watch(conn, "listen ping", deadline):
                    await conn.execute("SELECT 1")
                heard = time.monotonic()
