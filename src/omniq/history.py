"""A task's attempt history: one entry per execution, stored as a JSON list.

The queue appends an entry when it records an outcome (completed, retry, failed,
timeout), when it recovers a dead worker's task (lost) and when a pool puts an
unfinished task back (released), and hands the whole list to the store with the
outcome, so the history costs no extra commit. Shared by both twins.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence

from omniq.models import Attempt, AttemptOutcome, ErrorType, TaskError


def _from_epoch(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def history_entry(
    attempt: int,
    worker: str | None,
    started_at: float | None,
    finished_at: float,
    outcome: str,
    error: TaskError | None,
) -> str:
    """One attempt as its stored JSON object."""
    if error is None and started_at is not None:
        # The common case, once per execution: put together without building a dict.
        # repr() of a float is its shortest round-trip form, as json.dumps writes it.
        return (
            f'{{"attempt":{attempt:d},"worker":{_worker_json(worker)},'
            f'"started_at":{started_at!r},"finished_at":{finished_at!r},'
            f'"outcome":{json.dumps(outcome)},"error":null}}'
        )
    return json.dumps(
        {
            "attempt": attempt,
            "worker": worker,
            "started_at": started_at,
            "finished_at": finished_at,
            "outcome": outcome,
            "error": None if error is None else error.to_dict(),
        },
        separators=(",", ":"),
    )


@functools.lru_cache(maxsize=64)
def _worker_json(worker: str | None) -> str:
    return json.dumps(worker)  # a pool's name, the same for every entry it writes


def stored_history(attempts: Sequence[Attempt]) -> str | None:
    """A task's decoded attempt history in its stored form again (``None`` when empty)."""
    if not attempts:
        return None
    entries = [
        history_entry(
            attempt.attempt,
            attempt.worker,
            None if attempt.started_at is None else attempt.started_at.timestamp(),
            attempt.finished_at.timestamp(),
            attempt.outcome,
            attempt.error,
        )
        for attempt in attempts
    ]
    return f"[{','.join(entries)}]"


def append_history(history: str | None, entry: str) -> str:
    """``history`` (a stored JSON list, or ``None``) with ``entry`` appended.

    Text concatenation, not a decode and re-encode: this runs once per execution,
    and the stored list is always one omniq wrote (``[`` … ``]``).
    """
    if not history or history == "[]":
        return f"[{entry}]"
    return f"{history[:-1]},{entry}]"


def decode_history(history: str | None) -> list[Attempt]:
    """The stored attempt history as :class:`Attempt` entries; ``ValueError`` if corrupt."""
    if not history:
        return []
    entries = json.loads(history)
    if not isinstance(entries, list):
        raise ValueError("the attempt history is not a list")
    attempts: list[Attempt] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError("an attempt history entry is not an object")
        error = entry.get("error")
        finished = _from_epoch(entry["finished_at"])
        if finished is None:
            raise ValueError("an attempt history entry has no finish time")
        attempts.append(
            Attempt(
                attempt=int(entry["attempt"]),
                worker=entry.get("worker"),
                started_at=_from_epoch(entry.get("started_at")),
                finished_at=finished,
                outcome=str(entry["outcome"]),
                error=None if error is None else TaskError.from_dict(error),
            )
        )
    return attempts


def failure_outcome(error: TaskError, retried: bool) -> str:
    """The history outcome of a failed execution."""
    if error.error_type == ErrorType.TIMEOUT:
        return AttemptOutcome.TIMEOUT
    if error.error_type == ErrorType.WORKER_LOST:
        return AttemptOutcome.LOST
    return AttemptOutcome.RETRY if retried else AttemptOutcome.FAILED
