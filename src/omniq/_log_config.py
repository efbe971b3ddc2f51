"""omniq's logging configuration: :func:`configure` and :func:`reset`, the ``OMNIQ_LOG_*``
environment, omniq's sinks, and handing the configuration to child processes.

Runs when the configuration changes, once per process for the environment, and per record
only in :func:`_is_omniq_record` (the sinks' filter). The state it changes (threshold, sink
ids, the configuration in force) lives in :mod:`omniq.logging`, one copy, where the per-task
hot path reads it as a plain module global; this module writes it there. Re-exported by
:mod:`omniq.logging`, which imports it last (this module reads it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import time as daytime
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from loguru import logger as _root_logger

from omniq import logging as core
from omniq._log_format import format_dev, format_prod
from omniq._logfile import make_private_dirs, private_compression, private_opener, touch_private

# Constants only: copies are safe, and the sinks' filter reads them as plain globals.
from omniq.logging import _OFF, LOGGER_NAME, MARKER

if TYPE_CHECKING:
    from loguru import Message, Record, Writable

ENV_LEVEL = "OMNIQ_LOG_LEVEL"
ENV_MODE = "OMNIQ_LOG_MODE"
ENV_FILE = "OMNIQ_LOG_FILE"
ENV_ROTATION = "OMNIQ_LOG_ROTATION"
ENV_RETENTION = "OMNIQ_LOG_RETENTION"
# Rotation and retention only shape a file sink, so on their own they don't switch logging on.
_ENV_TRIGGERS = (ENV_LEVEL, ENV_MODE, ENV_FILE)

ALLOWED_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
ALLOWED_MODES = ("DEV", "PROD")
DEFAULT_LEVEL = "INFO"
DEFAULT_MODE = "DEV"
DEFAULT_ROTATION = "100 MB"
DEFAULT_RETENTION = "30 days"

RotationValue: TypeAlias = "str | int | daytime | timedelta"
RetentionValue: TypeAlias = "str | int | timedelta"
SinkValue: TypeAlias = "TextIO | Writable | Callable[[Message], None]"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class _Settings:
    level: str
    mode: str
    file: Path | None
    rotation: RotationValue
    retention: RetentionValue
    compression: str | None
    sink: SinkValue | None
    colorize: bool | None
    sources: Mapping[str, str]  # option name -> env var it came from, for error messages


def configure(
    level: str | None = None,
    *,
    mode: str | None = None,
    file: str | os.PathLike[str] | None = None,
    rotation: RotationValue | None = None,
    retention: RetentionValue | None = None,
    compression: str | None = None,
    sink: SinkValue | None = None,
    colorize: bool | None = None,
) -> None:
    """Enable omniq's records and (re)install omniq's sink(s).

    Each argument left as ``None`` falls back to its ``OMNIQ_LOG_*`` environment variable,
    then to the default (INFO, DEV, no file, "100 MB", "30 days"). Records go to ``file``
    when one is set, otherwise to ``sink`` (default: ``sys.stderr``); passing both writes
    to both. Sinks added by an earlier ``configure()`` are replaced; sinks the application
    added are never touched.

    Raises ``ValueError`` for an unknown level or mode or an unparsable rotation, retention
    or compression, and ``OSError`` when the log file cannot be opened for appending. On
    error the previous configuration stays in place.
    """
    settings = _resolve(
        level=level,
        mode=mode,
        file=file,
        rotation=rotation,
        retention=retention,
        compression=compression,
        sink=sink,
        colorize=colorize,
    )
    with core._lock:
        _apply(settings)


def reset() -> None:
    """Undo :func:`configure`: remove omniq's sinks and silence omniq's records again.

    The environment is looked at afresh on the next omniq log call. Meant for tests and for
    applications that reconfigure logging wholesale; it flushes file sinks.
    """
    with core._lock:
        _remove_own_sinks()
        _root_logger.disable(LOGGER_NAME)
        core._threshold = _OFF
        core._env_checked = False
        core._applied = None
        core._generation += 1


def _resolve(
    *,
    level: str | None,
    mode: str | None,
    file: str | os.PathLike[str] | None,
    rotation: RotationValue | None,
    retention: RetentionValue | None,
    compression: str | None,
    sink: SinkValue | None,
    colorize: bool | None,
) -> _Settings:
    """Merge arguments over the environment over defaults, and validate the result."""
    sources: dict[str, str] = {}

    def from_env(name: str, explicit: Any, env_var: str) -> Any:
        if explicit is not None:
            return explicit
        value = os.environ.get(env_var, "").strip()
        if value:
            sources[name] = env_var
            return value
        return None

    raw_level = from_env("level", level, ENV_LEVEL) or DEFAULT_LEVEL
    raw_mode = from_env("mode", mode, ENV_MODE) or DEFAULT_MODE
    raw_file = from_env("file", file, ENV_FILE)
    raw_rotation = from_env("rotation", rotation, ENV_ROTATION) or DEFAULT_ROTATION
    raw_retention = from_env("retention", retention, ENV_RETENTION) or DEFAULT_RETENTION

    checked_level = _check_choice("level", raw_level, ALLOWED_LEVELS, sources)
    checked_mode = _check_choice("mode", raw_mode, ALLOWED_MODES, sources)
    # A bare number from the environment means bytes (rotation) or a file count (retention),
    # as the same int would when passed to configure().
    if isinstance(raw_rotation, str) and raw_rotation.isdigit():
        raw_rotation = int(raw_rotation)
    if isinstance(raw_retention, str) and raw_retention.isdigit():
        raw_retention = int(raw_retention)
    # Checked even without a file, so a typo surfaces now rather than when a file is added.
    _check_file_option("rotation", raw_rotation, sources)
    _check_file_option("retention", raw_retention, sources)
    if compression is not None:
        _check_file_option("compression", compression, sources)

    return _Settings(
        level=checked_level,
        mode=checked_mode,
        file=Path(raw_file).expanduser().absolute() if raw_file is not None else None,
        rotation=raw_rotation,
        retention=raw_retention,
        compression=compression,
        sink=sink,
        colorize=colorize,
        sources=sources,
    )


def _origin(name: str, sources: Mapping[str, str]) -> str:
    env_var = sources.get(name)
    return f" (from {env_var})" if env_var else ""


def _check_choice(
    name: str, value: object, allowed: tuple[str, ...], sources: Mapping[str, str]
) -> str:
    normalized = value.strip().upper() if isinstance(value, str) else ""
    if normalized not in allowed:
        raise ValueError(
            f"Unknown omniq log {name} {value!r}{_origin(name, sources)}; "
            f"expected one of: {', '.join(allowed)}"
        )
    return normalized


_FILE_OPTION_HINTS = {
    "rotation": "a size ('100 MB'), an interval ('1 week', '12 hours'), a time of day "
    "('00:00', 'sunday at 12:00'), a frequency ('daily'), or an int number of bytes",
    "retention": "a duration ('30 days', '1 week') or an int number of files to keep",
    "compression": "an archive format: 'gz', 'bz2', 'xz', 'lzma', 'tar', 'tar.gz', "
    "'tar.bz2', 'tar.xz' or 'zip'",
}


def _check_file_option(name: str, value: object, sources: Mapping[str, str]) -> None:
    """Let loguru parse one file-sink option now, turning its error into a clear ValueError."""
    # loguru has no public parser for these; a file sink built with delay=True parses them
    # without touching the file system, and a filter that rejects everything keeps records
    # out of it. The empty temporary directory keeps retention's clean-up away from real files.
    with tempfile.TemporaryDirectory(prefix="omniq-log-check-") as directory:
        options: dict[str, Any] = {name: value}
        try:
            handler_id = _root_logger.add(
                os.path.join(directory, "check.log"),
                filter=lambda _record: False,
                delay=True,
                **options,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Invalid omniq log {name} {value!r}{_origin(name, sources)}: {exc}; "
                f"expected {_FILE_OPTION_HINTS[name]}"
            ) from None
        _root_logger.remove(handler_id)


def _check_writable(path: Path, sources: Mapping[str, str]) -> None:
    """Fail now, in the caller, if the log file can't be written, not later in a worker."""
    try:
        # A directory made here is 0700 and the file 0600, whatever the umask: log
        # lines hold task ids, function paths and errors.
        make_private_dirs(path.parent)
        if "{" in path.name:
            # loguru fills placeholders such as {time} at open time; check the directory only.
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Permission denied", str(path.parent))
        else:
            touch_private(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename and exc.filename != str(path):
            reason = f"{reason}: {exc.filename!r}"
        raise OSError(
            exc.errno,
            f"omniq cannot write its log file {str(path)!r}{_origin('file', sources)}: {reason}",
        ) from exc


def _apply(settings: _Settings, *, follower: bool = False) -> None:
    """Install the sinks for ``settings``, then drop the ones installed before.

    A ``follower`` (a child process applying its parent's settings) appends to the file
    without rotating it: only the parent rotates, and the child reopens the file when it
    was rotated away (loguru's ``watch``). It writes directly, without loguru's queue, so a
    child that crashes has written every record logged before the crash.
    """
    if follower:
        # Passed on to open(): each file the sink creates is 0600.
        file_options: dict[str, Any] = {"watch": True, "enqueue": False, "opener": private_opener}
    else:
        file_options = {
            # Records from every thread, and from forked children that inherit this
            # sink, go through one queue to one writer, a whole line at a time.
            "enqueue": True,
            "rotation": settings.rotation,
            "retention": settings.retention,
            "compression": private_compression(settings.compression),
            # Passed on to open(): each file the sink creates (rotation too) is 0600.
            "opener": private_opener,
        }
    if settings.file is not None:
        _check_writable(settings.file, settings.sources)

    formatter = format_prod if settings.mode == "PROD" else format_dev
    added: list[int] = []
    try:
        if settings.file is not None:
            added.append(
                _root_logger.add(
                    str(settings.file),
                    level=settings.level,
                    format=formatter,
                    filter=_is_omniq_record,
                    colorize=False,
                    backtrace=False,
                    diagnose=False,
                    **file_options,
                )
            )
        if settings.sink is not None or settings.file is None:
            added.append(
                _root_logger.add(
                    # sys.stderr is looked up now, so a stream redirected since import counts.
                    settings.sink if settings.sink is not None else sys.stderr,
                    level=settings.level,
                    format=formatter,
                    filter=_is_omniq_record,
                    colorize=settings.colorize if settings.mode == "DEV" else False,
                    # Values of local variables in tracebacks can hold secrets; keep them out.
                    backtrace=False,
                    diagnose=False,
                )
            )
    except Exception:
        for handler_id in added:
            _root_logger.remove(handler_id)
        raise

    # New sinks go in before old ones leave, so a record logged meanwhile is not lost.
    _remove_own_sinks()
    core._sink_ids.extend(added)
    _root_logger.enable(LOGGER_NAME)
    core._threshold = _root_logger.level(settings.level).no
    core._env_checked = True
    core._applied = settings
    core._generation += 1


def _remove_own_sinks() -> None:
    while core._sink_ids:
        handler_id = core._sink_ids.pop()
        # The application may have removed it already, e.g. with a bare logger.remove().
        with contextlib.suppress(ValueError):
            _root_logger.remove(handler_id)


def _configure_from_env() -> int:
    """On the first omniq log call, configure from OMNIQ_LOG_* if any is set.

    Returns the resulting threshold, so a helper can decide on its record in one expression.
    """
    with core._lock:
        if core._env_checked:
            return core._threshold
        core._env_checked = True
        if not any(os.environ.get(name, "").strip() for name in _ENV_TRIGGERS):
            return core._threshold
        # This runs inside some log call, perhaps in a worker: a bad setting must not raise
        # there. Warn and keep going as best we can; configure() raises for the same input.
        try:
            settings = _resolve(
                level=None,
                mode=None,
                file=None,
                rotation=None,
                retention=None,
                compression=None,
                sink=None,
                colorize=None,
            )
        except ValueError as exc:
            warnings.warn(f"omniq logging stays off: {exc}", RuntimeWarning, stacklevel=2)
            return core._threshold
        try:
            _apply(settings)
        except OSError as exc:
            warnings.warn(f"{exc}; omniq logs to stderr instead", RuntimeWarning, stacklevel=2)
            _apply(replace(settings, file=None))
        return core._threshold


# --------------------------------------------------------------------------- child processes


def export_config() -> tuple[int, dict[str, Any] | None]:
    """The configuration in force as JSON-ready data for a child process, and its generation.

    ``None`` means omniq's records are off: not configured (yet), so a child looks at the
    ``OMNIQ_LOG_*`` environment it inherits, as this process would on its first log call.
    The generation changes with every :func:`configure` and :func:`reset`, so a caller can
    tell when to send the configuration again. A child can share only the standard streams:
    for any other ``sink`` the data says ``"stream": "stderr"`` and ``"substituted": True``.
    """
    with core._lock:
        settings, generation = core._applied, core._generation
    if settings is None:
        return generation, None
    stream, substituted = _stream_of(settings)
    return generation, {
        "level": settings.level,
        "mode": settings.mode,
        "file": str(settings.file) if settings.file is not None else None,
        "stream": stream,
        "substituted": substituted,
        "colorize": settings.colorize,
    }


def apply_config(config: Mapping[str, Any] | None) -> None:
    """In a child process, apply what :func:`export_config` gave the parent.

    Same level, mode and file, and the inherited stderr/stdout for a stream sink, so the
    child's records look like the parent's and land in the same places. The file is
    appended to and never rotated here (see ``_apply``). ``None`` switches omniq's records
    off, as :func:`reset` does. ``ValueError`` for data that is not such a configuration.
    """
    if config is None:
        reset()
        return
    stream = config.get("stream")
    if stream not in (None, "stderr", "stdout"):
        raise ValueError(f"unknown log stream {stream!r} (expected 'stderr', 'stdout' or None)")
    file = config.get("file")
    colorize = config.get("colorize")
    settings = _Settings(
        level=_check_choice("level", config.get("level"), ALLOWED_LEVELS, {}),
        mode=_check_choice("mode", config.get("mode"), ALLOWED_MODES, {}),
        file=Path(file) if isinstance(file, str) else None,
        rotation=DEFAULT_ROTATION,  # unused by a follower
        retention=DEFAULT_RETENTION,
        compression=None,
        sink=None if stream is None else (sys.stdout if stream == "stdout" else sys.stderr),
        colorize=colorize if isinstance(colorize, bool) else None,
        sources={},
    )
    if settings.file is None and settings.sink is None:
        settings = replace(settings, sink=sys.stderr)
    with core._lock:
        _apply(settings, follower=True)


def prepare_child_process() -> None:
    """In a fresh child process, keep loguru's default sink for the application's own records.

    The default stderr sink loguru adds on import would also print omniq's records, a second
    time next to omniq's own sink; it is replaced by the same sink without them. An
    application that removed it (in code its main module runs on import) keeps its choice.
    """
    with core._lock:
        try:
            _root_logger.remove(0)
        except ValueError:
            return
        _root_logger.add(sys.stderr, filter=lambda record: not _is_omniq_record(record))


def _stream_of(settings: _Settings) -> tuple[str | None, bool]:
    """Which standard stream a child should write to for ``settings``, and whether it stands in."""
    sink = settings.sink
    if sink is None:
        return (None if settings.file is not None else "stderr"), False
    for name, streams in (
        ("stderr", (sys.stderr, sys.__stderr__)),
        ("stdout", (sys.stdout, sys.__stdout__)),
    ):
        if any(sink is stream for stream in streams if stream is not None):
            return name, False
    try:
        number = sink.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        number = None
    if number in (1, 2):
        return ("stdout" if number == 1 else "stderr"), False
    return "stderr", True


def _is_omniq_record(record: Record) -> bool:
    # omniq's sinks take omniq's records, not everything the application logs: the
    # application's records already reach the application's own sinks.
    if MARKER in record["extra"]:
        return True
    name = record["name"]
    return name is not None and (name == LOGGER_NAME or name.startswith("omniq."))
