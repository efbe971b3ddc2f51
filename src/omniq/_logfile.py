"""Log files only their owner can read: created 0600, whatever the umask.

omniq's log lines hold task ids, function paths and errors, so the file sink, the
files rotation starts and the archives compression writes are all created with
mode 0600 (and a directory made for them 0700). A log file that already exists
keeps the mode its owner gave it.

Used by :mod:`omniq._log_config`, which adds the file sink; a leaf: it imports nothing
else of omniq.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700
_POSIX = os.name == "posix"


def _create_private(path: str | os.PathLike[str], flags: int) -> int:
    """Open ``path`` with ``flags``; if this call creates it, it gets mode 0600."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags & ~os.O_CREAT)
    if _POSIX:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken the owner's bits too
    return fd


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: a file it creates is 0600; an existing one is kept."""
    return _create_private(path, flags)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, each with mode 0700."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError as error:
            if not path.is_dir():
                raise NotADirectoryError(error.errno, "Not a directory", str(path)) from error
            continue
        if _POSIX:
            os.chmod(path, DIR_MODE)


def touch_private(path: Path) -> None:
    """Create ``path`` for appending if missing (0600); check an existing one can be appended to."""
    os.close(_create_private(path, os.O_WRONLY | os.O_APPEND))


FORMATS = ("gz", "bz2", "xz", "lzma", "tar", "tar.gz", "tar.bz2", "tar.xz", "zip")


def _copy_into(source: str, packed: io.BufferedIOBase) -> None:
    with open(source, "rb") as plain:
        shutil.copyfileobj(plain, packed)


def _write_archive(extension: str, source: str, raw: IO[bytes]) -> None:
    """Write ``source`` into ``raw`` as loguru's ``compression=extension`` would."""
    name = os.path.basename(source)
    if extension == "gz":
        with gzip.GzipFile(fileobj=raw, mode="wb") as packed:
            _copy_into(source, packed)
    elif extension == "bz2":
        with bz2.BZ2File(raw, "wb") as packed:
            _copy_into(source, packed)
    elif extension in ("xz", "lzma"):
        kind = lzma.FORMAT_XZ if extension == "xz" else lzma.FORMAT_ALONE
        with lzma.LZMAFile(raw, "wb", format=kind) as packed:
            _copy_into(source, packed)
    elif extension == "zip":
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(source, name)
    else:  # tar, tar.gz, tar.bz2, tar.xz
        with _tar(extension, raw) as archive:
            archive.add(source, name)


def _tar(extension: str, raw: IO[bytes]) -> tarfile.TarFile:
    if extension == "tar.gz":
        return tarfile.open(fileobj=raw, mode="w:gz")
    if extension == "tar.bz2":
        return tarfile.open(fileobj=raw, mode="w:bz2")
    if extension == "tar.xz":
        return tarfile.open(fileobj=raw, mode="w:xz")
    return tarfile.open(fileobj=raw, mode="w:")


def private_compression(compression: Any) -> Any:
    """loguru's ``compression`` option, with archives created 0600.

    A format name (``"gz"``, ``"zip"``...) becomes a function that writes the same
    archive loguru would, next to the rotated file, then removes that file. A
    callable or ``None`` is passed through: the caller's function is its own.
    """
    if not isinstance(compression, str):
        return compression
    extension = compression.strip().lstrip(".")
    if extension not in FORMATS:
        return compression  # loguru reports the unknown format

    def compress(path: str) -> None:
        target = f"{path}.{extension}"
        counter = 1
        while os.path.lexists(target):  # never overwrite an older archive
            counter += 1
            target = f"{path}.{counter}.{extension}"
        with os.fdopen(_create_private(target, os.O_WRONLY | os.O_TRUNC), "wb") as raw:
            _write_archive(extension, path, raw)
        os.remove(path)

    return compress
