"""Private files and directories for the stores that live on disk (SQLite, files).

Task arguments often carry secrets, so what omniq keeps is its owner's alone:
directories 0700, files 0600, whatever the umask says. The rules, for every store:

* A directory omniq creates gets 0700 and must really be a directory once made:
  a symbolic link found in its place (planted in a race) is refused.
* A store directory or file that already exists is omniq's: it must not be a
  symbolic link, and a mode wider than 0700/0600 is tightened, with a warning that
  names the path and the old mode, or refused when omniq cannot change it (another
  user owns it). Only the store's root (``base_dir``) may be a link, when the link
  and the directory it leads to are both the current user's (a data directory
  moved to another disk). Directories above the store (``/tmp``, a symlinked
  home) are the user's and are left as they are.
* Files are opened with ``O_NOFOLLOW`` and ``O_NONBLOCK`` and must be regular
  files, so a symbolic link, FIFO or device in a store is never read or written.

Each refusal is a :class:`~omniq.exceptions.StorageError` that says what to fix.
Windows has no POSIX modes or ``O_NOFOLLOW``; there only the link checks apply.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from omniq import logging as omniq_logging
from omniq.exceptions import StorageError

DIR_MODE = 0o700
FILE_MODE = 0o600
_POSIX = os.name == "posix"
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _mode_text(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


def _tighten(path: Path, info: os.stat_result, allowed: int, kind: str) -> None:
    """Bring ``path`` down to ``allowed`` if its mode is wider; refuse if that fails."""
    if not _POSIX or stat.S_IMODE(info.st_mode) & ~allowed == 0:
        return
    old = _mode_text(info.st_mode)
    try:
        # lstat() above saw no link; the directory around it is the store's own, so
        # no one else can swap one in before this call.
        os.chmod(path, allowed)
    except OSError as error:
        raise StorageError(
            f"omniq's {kind} {str(path)!r} has mode {old}, open to other users, and omniq "
            f"cannot make it {allowed:04o} ({error.strerror or error}); fix it with "
            f"'chmod {allowed:o} {path}' as its owner, or use another base_dir"
        ) from error
    omniq_logging.log_permissions_tightened(str(path), old, f"{allowed:04o}")


def _refuse_link(path: Path, kind: str) -> StorageError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return StorageError(
        f"omniq's {kind} {str(path)!r} is a symbolic link (to {target!r}); omniq does not "
        "follow links inside its store: move the real directory or file there instead"
    )


def _own_link_to_own_dir(path: Path, link: os.stat_result) -> os.stat_result | None:
    """The target's stat if ``path`` is the user's link to the user's directory."""
    if not _POSIX or link.st_uid != os.geteuid():
        return None
    try:
        target = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(target.st_mode) and target.st_uid == os.geteuid():
        return target
    return None


def check_private_dir(path: Path, *, own_link_ok: bool = False) -> None:
    """``path`` must be a real directory (not a link); a mode wider than 0700 is tightened.

    With ``own_link_ok`` (a store's root), a link is accepted when it and the
    directory it leads to are both the current user's; that directory is checked.
    """
    try:
        info = os.lstat(path)
    except OSError as error:
        raise StorageError(f"cannot use the store directory {str(path)!r}: {error}") from error
    if stat.S_ISLNK(info.st_mode):
        target = _own_link_to_own_dir(path, info) if own_link_ok else None
        if target is None:
            raise _refuse_link(path, "store directory")
        info = target
    if not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"omniq's store directory {str(path)!r} exists but is not a directory")
    _tighten(path, info, DIR_MODE, "store directory")


def check_private_file(path: Path) -> bool:
    """If ``path`` exists it must be a regular file (not a link); tighten a mode above 0600.

    Returns whether it exists.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StorageError(f"cannot use the store file {str(path)!r}: {error}") from error
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_link(path, "store file")
    if not stat.S_ISREG(info.st_mode):
        raise StorageError(f"omniq's store file {str(path)!r} exists but is not a regular file")
    _tighten(path, info, FILE_MODE, "store file")
    return True


def ensure_private_dir(path: Path, *, owned: bool = True, own_link_ok: bool = False) -> None:
    """Create ``path`` and missing parents with mode 0700, refusing links planted meanwhile.

    With ``owned`` (a store directory), an existing ``path`` must pass
    :func:`check_private_dir` (``own_link_ok`` for a store's root); without it (the
    parent of a database file the user named), an existing directory is left as it is.
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # another process made it first: checked below like our own
        except OSError as error:
            raise StorageError(
                f"cannot create the directory {str(directory)!r}: {error}"
            ) from error
        else:
            if _POSIX:
                os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
        info = os.lstat(directory)
        if stat.S_ISLNK(info.st_mode):
            raise _refuse_link(directory, "directory")
        if not stat.S_ISDIR(info.st_mode):
            raise StorageError(f"{str(directory)!r} exists but is not a directory")
    if owned and path not in missing:
        check_private_dir(path, own_link_ok=own_link_ok)


def ensure_private_file(path: Path, owned_dir: bool = True) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; an existing one is checked.

    The parent is made with :func:`ensure_private_dir` (``owned_dir``: it is the
    store's root, checked too). The file is created with ``O_EXCL | O_NOFOLLOW``, so a
    link planted in its place is found, never followed; an existing file must pass
    :func:`check_private_file`. SQLite's ``-wal``, ``-shm`` and ``-journal`` files
    beside it are checked the same way when present.
    """
    ensure_private_dir(path.parent, owned=owned_dir, own_link_ok=True)
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | O_NOFOLLOW | O_CLOEXEC
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        check_private_file(path)
    except OSError as error:
        raise StorageError(f"cannot create the store file {str(path)!r}: {error}") from error
    else:
        try:
            if _POSIX:
                os.fchmod(fd, FILE_MODE)  # the umask may have removed the owner's bits
        finally:
            os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        check_private_file(path.with_name(path.name + suffix))


class NotARegularFile(OSError):
    """What :func:`open_task_file_nofollow` raises for a link, FIFO, device or directory."""


def open_task_file_nofollow(path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> int:
    """Open ``path`` without following a link or blocking on a FIFO; return the descriptor.

    ``O_NOFOLLOW`` makes a symbolic link fail (``ELOOP``) instead of opening its
    target, ``O_NONBLOCK`` keeps a FIFO from blocking the open, and the ``fstat``
    that follows refuses anything but a regular file with :class:`NotARegularFile`
    (an ``OSError``, so callers can quarantine it like any unreadable entry).
    """
    try:
        fd = os.open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_BINARY)
    except OSError as error:
        if error.errno == errno.ELOOP or (
            # FreeBSD and macOS say EMLINK for O_NOFOLLOW on a link
            error.errno == errno.EMLINK and os.path.islink(path)
        ):
            raise NotARegularFile(errno.ELOOP, "is a symbolic link", str(path)) from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd
