"""What crosses the process boundary: jobs, their results, and the messages that carry them.

Everything is JSON text. The task's arguments travel as the store's own encoded payload
(``{"args": [...], "kwargs": {...}}`` from :func:`omniq.records.encode_payload`) and the
result comes back encoded by the same serializer, so no task data is ever pickled: a child
can only build the plain values the serializer builds, and an exception that cannot be
pickled still arrives (as a :class:`~omniq.models.TaskError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omniq._validation import check_func_path, normalize_timeout
from omniq.models import Task, TaskError
from omniq.records import encode_payload
from omniq.serialization import Serializer
from omniq.task_context import DEFAULT_QUEUE

# Fields task_context() sets itself from the job.
_CONTEXT_KEYS = frozenset({"task_id", "operation", "correlation_id"})


@dataclass(frozen=True)
class Job:
    """One execution of a task function, to run in a child process.

    * ``payload``: the store's encoded ``{"args": [...], "kwargs": {...}}`` text, in the
      codec the pool's children use (omniq's JSON by default).
    * ``timeout``: seconds until the parent stops the child (SIGTERM, then SIGKILL after the
      grace); ``None`` for no limit.
    * ``kill_grace``: seconds between SIGTERM and SIGKILL for this job (``None``: the pool's
      ``kill_grace``); pass less, such as the time left on the task's lease.
    * ``log_fields``: bound on every record logged while the job runs (``worker=...``).
    * ``context``: facts about the run (queue, attempt, max_retries, worker, eta...), readable
      in the child through :func:`omniq._process.child.current_job`; ``context["attempt"]``
      numbers the "started" log record. Both mappings must be JSON-encodable.
    """

    task_id: str
    func_path: str
    payload: str
    timeout: float | None = None
    correlation_id: str | None = None
    kill_grace: float | None = None
    log_fields: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise TypeError(f"task_id must be a non-empty str, got {self.task_id!r}")
        check_func_path(self.func_path)
        if not isinstance(self.payload, str):
            raise TypeError(f"payload must be the encoded text, got {type(self.payload).__name__}")
        normalize_timeout(self.timeout)
        if self.kill_grace is not None:
            check_grace("kill_grace", self.kill_grace)
        if self.correlation_id is not None and not isinstance(self.correlation_id, str):
            raise TypeError(f"correlation_id must be a str, got {self.correlation_id!r}")
        clashes = sorted(set(self.log_fields) & _CONTEXT_KEYS)
        if clashes:
            raise TypeError(
                f"log_fields may not set {', '.join(clashes)}: the job's own fields say those"
            )

    def to_message(self) -> bytes:
        """The ``run`` message for a child; ``TypeError`` names a field JSON cannot encode."""
        job = {
            "task_id": self.task_id,
            "func_path": self.func_path,
            "payload": self.payload,
            "correlation_id": self.correlation_id or self.task_id,
            "log_fields": dict(self.log_fields),
            "context": dict(self.context),
        }
        try:
            return encode_message({"op": "run", "job": job})
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"job {self.task_id}: log_fields and context must be JSON-encodable ({error})"
            ) from None


def job_for_task(
    task: Task,
    serializer: Serializer,
    *,
    timeout: float | None,
    worker: str,
    kill_grace: float | None = None,
    context: Mapping[str, Any] | None = None,
) -> Job:
    """The :class:`Job` for one claimed attempt of ``task``, as a worker pool would run it.

    ``serializer`` encodes the arguments and must be the codec the pool's children decode
    with. ``context`` adds to (and overrides) the facts taken from the task (queue,
    attempt, max_retries, worker, eta, attempt_token), from which the child builds the
    task's ``omniq.current_task()``.
    """
    facts: dict[str, Any] = {
        "queue": getattr(task, "queue", None) or DEFAULT_QUEUE,
        "attempt": task.attempts,
        "max_retries": task.max_retries,
        "worker": worker,
        "eta": task.eta.isoformat(),
        "attempt_token": task.attempt_token,
    }
    facts.update(context or {})
    return Job(
        task_id=task.id,
        func_path=task.func_path,
        payload=encode_payload(serializer, task.args, task.kwargs),
        timeout=timeout,
        correlation_id=task.correlation_id or task.id,
        kill_grace=kill_grace,
        log_fields={"worker": worker},
        context=facts,
    )


class JobOutcome(str, Enum):
    """How a job ended: it ran to a result, it failed, or it was released unfinished."""

    COMPLETED = "completed"
    FAILED = "failed"
    RELEASED = "released"
    """Stopped (or never started) because the pool shut down: put the task back without
    spending an attempt."""

    def __str__(self) -> str:
        return self.value


RELEASED = JobOutcome.RELEASED
"""The marker of a job the pool gave back at shutdown (``result.outcome is RELEASED``)."""


@dataclass(frozen=True)
class JobResult:
    """What became of one :class:`Job`.

    ``result`` is the return value encoded by the children's serializer (COMPLETED);
    ``error`` says why it failed (FAILED: ``timeout``, ``crashed``, ``runtime``...);
    a RELEASED job has neither. ``pid`` is the child that ran it, ``duration`` the seconds
    from handing the job to the child until its answer (or its death), and ``rss_mib``
    the child's resident memory after the job, when the child reported it.
    """

    task_id: str
    outcome: JobOutcome
    result: str | None = None
    error: TaskError | None = None
    pid: int | None = None
    duration: float | None = None
    rss_mib: float | None = None

    @property
    def completed(self) -> bool:
        """Whether the function returned (``result`` holds its encoded value)."""
        return self.outcome is JobOutcome.COMPLETED

    @property
    def released(self) -> bool:
        """Whether the pool gave the job back unfinished (no attempt should be spent)."""
        return self.outcome is JobOutcome.RELEASED

    def decode_result(self, serializer: Serializer) -> Any:
        """The return value, decoded (``None`` unless COMPLETED)."""
        return serializer.loads(self.result) if self.result is not None else None


# One encoder for every message: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One protocol message as JSON bytes (NaN refused, as the store refuses it).

    ASCII with escapes, so any ``str`` crosses, a lone surrogate in an error message too.
    """
    return _ENCODER.encode(message).encode("ascii")


def decode_message(data: bytes) -> dict[str, Any]:
    """Read one protocol message; ``ValueError`` if it is not a JSON object with an ``op``."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError(f"not a process-pool message: {data[:80]!r}")
    return message


def check_grace(name: str, value: object) -> float:
    """A grace period: a finite number of seconds, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
