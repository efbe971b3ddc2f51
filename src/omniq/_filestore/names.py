"""File names of the file store, and the record inside each task file.

Names carry what the hot paths need, so they never open a file to decide:

* ``pending/{queue}/{rank}-{eta}-{seq}-{id}.json``: ``rank`` is ``100 - priority``
  (3 digits), ``eta`` microseconds (rounded up: never early) and ``seq`` the
  enqueue order (20 digits each). Name order in a queue is claim order within
  one priority, and comparing names across queues gives the claim order too.
* ``running/{queue}/{id}.{token}~{worker}.json``: the attempt token (its first
  half is the claim time) and the claiming pool's name, percent-encoded; the
  file's mtime is the lease. ``~{worker}`` is absent when no worker was named
  (and in running files left by omniq 0.1.0).
* ``done/{status}/{queue}/{id}.json``.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from omniq._fs import NotARegularFile, open_task_file_nofollow
from omniq.records import FINAL_STATUSES, StateRecord, TaskRecord, Transition

WIDTH = 20  # digits of the eta and seq fields of a pending name
_MAX_KEY = int("9" * WIDTH)
ID = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
PENDING = re.compile(rf"(?P<rank>\d{{3}})-(?P<eta>\d{{{WIDTH}}})-\d{{{WIDTH}}}-(?P<id>{ID})\.json")
V1_PENDING = re.compile(rf"\d{{{WIDTH}}}-\d{{{WIDTH}}}-(?P<id>{ID})\.json")
RUNNING = re.compile(
    rf"(?P<id>{ID})\.(?P<token>[0-9a-f]{{32}})(?:~(?P<worker>[A-Za-z0-9_.%-]*))?\.json"
)
DONE = re.compile(rf"(?P<id>{ID})\.json")
KEY = re.compile(r"[0-9a-f]{64}")
_TASK_ID = re.compile(ID)
_TOKEN = re.compile(r"[0-9a-f]{32}")
INTENT = ".intent~"
V1_QUEUE = "default"  # omniq 0.1.0 had one queue: its tasks are this queue's
FINAL = tuple(sorted(FINAL_STATUSES))  # cancelled, completed, failed
FINAL_SET = frozenset(FINAL)
RANK_AT = slice(0, 3)
ETA_AT = slice(4, 4 + WIDTH)
ID_AT = 4 + 2 * WIDTH + 2  # where the id starts in a pending name
_NAME_MAX = 255  # bytes in one file name on every filesystem omniq supports
_WORKER_SAFE = frozenset(string.ascii_letters + string.digits + "_.-")
_ELLIPSIS = "%E2%80%A6"  # "…": ends a worker name cut to fit in a file name
_COMPONENT_MAX = 200  # longer encoded names are hashed


class CorruptFile(ValueError):
    """A task file that is not a valid task record (``content``: else not a regular file)."""

    def __init__(self, reason: str, *, content: bool = True) -> None:
        super().__init__(reason)
        self.content = content


# --------------------------------------------------------------------------- names


def _key(seconds: float, rounding: Callable[[float], int]) -> int:
    return min(max(rounding(seconds * 1_000_000), 0), _MAX_KEY)


def rank(priority: int) -> str:
    """``100 - priority`` in 3 digits: a higher priority sorts first."""
    return f"{100 - min(max(priority, -100), 100):03d}"


def pending_name(record: TaskRecord, seq: int) -> str:
    """The pending file name: sorts by (priority, eta, seq); the eta rounded up, never early."""
    eta = _key(record.eta, math.ceil)
    return f"{rank(record.priority)}-{eta:0{WIDTH}d}-{seq:0{WIDTH}d}-{record.id}.json"


def migrated_name(v1_name: str) -> str:
    """The v2 pending name of a pending name of omniq 0.1.0 (priority 0)."""
    return f"{rank(0)}-{v1_name}"


def pending_id(name: str) -> str:
    return name[ID_AT:-5]


def due_key(now: float) -> str:
    """The eta field up to which a name may be due at ``now`` (its microsecond, rounded up).

    A name's eta is rounded up, so a name above it is not due; one at or below it is
    due if its record's exact eta says so (the claim reads the record it wins).
    """
    return f"{_key(now, math.ceil):0{WIDTH}d}"


def eta_of(name: str) -> float:
    return int(name[ETA_AT]) / 1_000_000


def new_token(now: float) -> str:
    # Opaque to the queue; the storage reads the claim time back from its first half.
    return f"{_key(now, math.floor):016x}{secrets.token_hex(8)}"


def token_time(token: str) -> float:
    return int(token[:16], 16) / 1_000_000


def valid_id(task_id: object) -> bool:
    return isinstance(task_id, str) and _TASK_ID.fullmatch(task_id) is not None


def valid_token(token: object) -> bool:
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def valid_queue(queue: object) -> bool:
    return isinstance(queue, str) and QUEUE.fullmatch(queue) is not None


def _percent(char: str) -> str:
    if char in _WORKER_SAFE:
        return char
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def running_name(task_id: str, token: str, worker: str | None) -> str:
    """The running file name; a worker name too long to fit is cut, ending in "…"."""
    base = f"{task_id}.{token}"
    if worker is None:
        return f"{base}.json"
    budget = _NAME_MAX - len(base) - len("~.json")
    pieces: list[str] = []
    used = 0
    for char in worker:
        piece = _percent(char)
        if used + len(piece) > budget:
            while pieces and used + len(_ELLIPSIS) > budget:
                used -= len(pieces.pop())
            pieces.append(_ELLIPSIS)
            break
        pieces.append(piece)
        used += len(piece)
    return f"{base}~{''.join(pieces)}.json"


def component(text: str) -> str:
    """``text`` as one file name of its own: percent-encoded, or hashed when long.

    Distinct texts give distinct names: ``%`` is encoded too, a leading dot (a
    hidden name) becomes ``%2E``, the empty text is ``~`` and a hashed name is
    ``~`` and 64 hex digits (no encoding yields a ``~``).
    """
    encoded = "".join(_percent(char) for char in text)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > _COMPONENT_MAX:
        return "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return encoded or "~"


def worker_of(match: re.Match[str]) -> str | None:
    """The worker name in a running name (matched by :data:`RUNNING`)."""
    encoded = match["worker"]
    return None if encoded is None else unquote(encoded, errors="replace")


# --------------------------------------------------------------------------- records


def encode(record: TaskRecord, seq: int) -> bytes:
    data = record.to_dict()
    data["_seq"] = seq
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


_NOT_A_FILE = frozenset((errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP))


def open_nofollow(path: Path) -> int:
    """``path`` opened read-only, without following a link or blocking on a FIFO.

    ``CorruptFile(content=False)`` for anything but a regular file there (a link,
    FIFO, socket, device or directory); ``FileNotFoundError`` if nothing is there.
    """
    try:
        return open_task_file_nofollow(path)
    except NotARegularFile as error:
        raise CorruptFile(error.strerror or "not a regular file", content=False) from None
    except OSError as error:
        if error.errno in _NOT_A_FILE:
            raise CorruptFile(error.strerror or "not a regular file", content=False) from None
        raise


def read_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes and the status of the regular file at ``path`` (see :func:`open_nofollow`)."""
    fd = open_nofollow(path)
    try:
        info = os.fstat(fd)
        chunks: list[bytes] = []
        while chunk := os.read(fd, max(info.st_size, 4096)):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), info


def load(path: Path, task_id: str | None) -> tuple[TaskRecord, int | None, os.stat_result]:
    """Read a task file; ``CorruptFile`` if it is not a record (of ``task_id``)."""
    raw, info = read_file(path)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = TaskRecord.from_dict(data)
        if task_id is not None and record.id != task_id:
            raise ValueError(f"it holds task {record.id!r}, its name says {task_id!r}")
        seq = data.get("_seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            raise ValueError(f"bad _seq {seq!r}")
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError too
        raise CorruptFile(str(error) or type(error).__name__) from None
    return record, seq, info


def encode_state(record: StateRecord) -> bytes:
    data = dataclasses.asdict(record)
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


def load_state(path: Path) -> StateRecord:
    """Read a state record file; ``CorruptFile`` if it is not one."""
    raw, _ = read_file(path)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = StateRecord(**data)
        if not (isinstance(record.kind, str) and isinstance(record.name, str)):
            raise ValueError("its kind and name must be strings")
        if not isinstance(record.data, str):
            raise ValueError("its data must be a string")
        for value in (record.updated_at, record.mark):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ValueError(f"a time that is no number: {value!r}")
    except (ValueError, TypeError, RecursionError) as error:
        raise CorruptFile(str(error) or type(error).__name__) from None
    return record


def as_running(record: TaskRecord, token: str, mtime_ns: int, worker: str | None) -> TaskRecord:
    """The record of a running file: its bytes as pending, plus what its name and mtime say."""
    started = token_time(token)
    return dataclasses.replace(
        record,
        status="running",
        attempts=record.attempts + 1,
        attempt_token=token,
        lease_until=mtime_ns / 1_000_000_000,
        started_at=started,
        updated_at=started,
        worker=worker,
    )


def finished_record(current: TaskRecord, transition: Transition) -> TaskRecord:
    return dataclasses.replace(
        current,
        status=transition.status,
        result=transition.result,
        error=transition.error,
        eta=current.eta if transition.eta is None else transition.eta,
        updated_at=transition.now,
        finished_at=transition.now if transition.is_final else None,
        lease_until=None,
        attempt_token=None,
        history=current.history if transition.history is None else transition.history,
    )


def released_record(current: TaskRecord, now: float, history: str | None) -> TaskRecord:
    return dataclasses.replace(
        current,
        status="pending",
        attempts=max(current.attempts - 1, 0),
        eta=now,
        updated_at=now,
        lease_until=None,
        attempt_token=None,
        history=current.history if history is None else history,
    )


def requeued_record(current: TaskRecord, now: float) -> TaskRecord:
    return dataclasses.replace(
        current,
        status="pending",
        attempts=0,
        eta=now,
        updated_at=now,
        error=None,
        result=None,
        finished_at=None,
        started_at=None,
        lease_until=None,
        attempt_token=None,
    )
