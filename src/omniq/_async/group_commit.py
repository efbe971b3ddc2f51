"""Group commit: concurrent enqueues on one queue share one store transaction.

While one commit is in flight, the enqueues that arrive queue up; the next commit
writes them all together, so many producers (coroutines on one ``AsyncOmniQ``, threads
on one ``OmniQ``) pay one disk sync per batch instead of one each. Each caller returns
only once its own tasks are stored (the guarantee of a lone enqueue is unchanged),
with its own ids (unique keys are settled in arrival order, as one enqueue after the
other would settle them). A lone caller goes straight to the store, as before: the
one-statement path. If a batch fails, its entries are stored one by one, so one bad
entry fails only its own caller.

Leadership passes on: the caller that commits a batch hands the next batch to the
first caller waiting in it, so no caller works for others for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncThreadGuard, AsyncWaiter
from omniq.records import TaskRecord

_LEAD = object()  # handed to a waiting caller: commit the next batch yourself


class _Entry:
    __slots__ = ("records", "waiter")

    def __init__(self, records: Sequence[TaskRecord], waiter: AsyncWaiter) -> None:
        self.records = records
        self.waiter = waiter


class AsyncGroupCommit:
    """The enqueue path of one queue's storage (see the module docstring)."""

    def __init__(self, storage: AsyncBaseStorage) -> None:
        self.storage = storage
        self._guard = AsyncThreadGuard()
        self._waiting: list[_Entry] = []
        self._leading = False

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Store ``records`` (with others that arrive meanwhile); their ids, as ``storage.add``."""
        with self._guard:
            entry = None
            if self._leading:
                entry = _Entry(records, AsyncWaiter())
                self._waiting.append(entry)
            else:
                self._leading = True
        if entry is None:
            try:
                return await self.storage.add(records)  # alone: the one-statement path
            finally:
                self._pass_on()
        try:
            answer: Any = await entry.waiter.wait()
        except BaseException:  # cancelled, or Ctrl-C while waiting: leave the line cleanly
            with self._guard:
                if entry in self._waiting:
                    self._waiting.remove(entry)
            if entry.waiter.handed() is _LEAD:
                self._pass_on()  # chosen to lead, but going away: choose the next one
            raise
        if answer is not _LEAD:
            ids: list[str] = answer
            return ids
        entry.waiter = AsyncWaiter()  # the first waiter leads this batch
        with self._guard:
            batch, self._waiting = self._waiting, []
        try:
            await self._commit(batch)
        finally:
            self._pass_on()
        led: list[str] = await entry.waiter.wait()
        return led

    def _pass_on(self) -> None:
        """Hand the next batch to its first caller, or stop leading if nobody waits."""
        with self._guard:
            if not self._waiting:
                self._leading = False
                return
            first = self._waiting[0].waiter
        first.set(_LEAD)

    async def _commit(self, batch: list[_Entry]) -> None:
        if len(batch) > 1:
            together = [record for entry in batch for record in entry.records]
            try:
                ids = await self.storage.add(together)
            except Exception:
                pass  # one entry may be bad: store them one by one below
            else:
                start = 0
                for entry in batch:
                    entry.waiter.set(ids[start : start + len(entry.records)])
                    start += len(entry.records)
                return
        for entry in batch:
            try:
                entry.waiter.set(await self.storage.add(entry.records))
            except Exception as error:
                entry.waiter.fail(error)
