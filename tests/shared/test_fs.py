"""``omniq._fs``: the helpers every on-disk store uses to stay private and follow no link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from omniq._fs import (
    NotARegularFile,
    check_private_dir,
    ensure_private_file,
    open_task_file_nofollow,
)
from omniq.exceptions import StorageError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes, links and FIFOs")


def test_open_task_file_nofollow_opens_regular_files_only(tmp_path: Path) -> None:
    regular = tmp_path / "task.json"
    regular.write_text("{}")
    fd = open_task_file_nofollow(regular)
    try:
        assert os.read(fd, 10) == b"{}"
    finally:
        os.close(fd)
    link = tmp_path / "link.json"
    link.symlink_to(regular)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # without O_NONBLOCK, opening it would wait for a writer forever
    directory = tmp_path / "dir.json"
    directory.mkdir()
    for path in (link, fifo, directory):
        with pytest.raises(NotARegularFile) as raised:
            open_task_file_nofollow(path)
        assert raised.value.filename == str(path)
        assert isinstance(raised.value, OSError)
    with pytest.raises(FileNotFoundError):
        open_task_file_nofollow(tmp_path / "missing.json")


def test_check_private_dir_tightens_and_refuses_links(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    os.chmod(store, 0o755)
    check_private_dir(store)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(store)
    with pytest.raises(StorageError, match="symbolic link"):
        check_private_dir(link)
    with pytest.raises(StorageError, match="not a directory"):
        check_private_dir(Path(__file__))


def test_ensure_private_file_creates_0600_and_refuses_a_planted_link(tmp_path: Path) -> None:
    old = os.umask(0o277)  # even a umask that takes the owner's write bit
    try:
        ensure_private_file(tmp_path / "new" / "omniq.db")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "omniq.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    (tmp_path / "planted").symlink_to(tmp_path / "target")
    with pytest.raises(StorageError, match="symbolic link"):
        ensure_private_file(tmp_path / "planted", False)
    assert not (tmp_path / "target").exists()


def test_the_parent_of_a_file_the_user_named_is_left_alone(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    ensure_private_file(tmp_path / "queue.db", False)  # SQLiteStorage("queue.db") in a user dir
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "queue.db").st_mode) == 0o600


def test_a_store_root_may_be_the_users_own_link_to_the_users_own_directory(
    tmp_path: Path,
) -> None:
    real = tmp_path / "big-disk" / "omniq"
    real.mkdir(parents=True)
    os.chmod(real, 0o750)
    root = tmp_path / "omniq"
    root.symlink_to(real)
    ensure_private_file(root / "omniq.db")
    assert (real / "omniq.db").is_file()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o700  # the directory it leads to
    with pytest.raises(StorageError, match="symbolic link"):
        check_private_dir(root)  # a link anywhere else in a store is refused
