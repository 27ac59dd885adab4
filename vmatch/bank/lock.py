"""The bank's writer lock: one writer at a time, any number of readers.

Concurrency. One writer at a time (an exclusive ``flock`` on ``DIR/.writer.lock``, which holds
the writing process's id); any number of readers, each of which sees one consistent generation
(a single read transaction), never half of a change. A long write (``vmatch index``) takes the
lock once at its start (:meth:`vmatch.bank.Bank.lock_for_writing`) and waits for it as long as
it takes, or refuses at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmatch.errors import BankError, BankNotFoundError

LOCK_NAME = ".writer.lock"


class BankBusyError(BankError):
    """Another process holds the bank's writer lock, and the caller chose not to wait (longer)."""


@dataclass(frozen=True)
class WriterLockHolder:
    """Who holds a bank's writer lock: its lock file and the process id written in it (None
    when the holder wrote none, e.g. an older vmatch)."""

    lock_path: Path
    pid: int | None

    def described(self) -> str:
        """`` (pid N)`` or nothing, for messages."""
        return f" (pid {self.pid})" if self.pid is not None else ""


def acquire_writer_lock(bank_path: Path, *, timeout: float, still_current: Callable[[], bool],
                        on_wait: Callable[[WriterLockHolder], None] | None = None) -> int:
    """Take the exclusive ``flock`` on ``bank_path/.writer.lock``, waiting up to ``timeout``
    seconds (``math.inf``: without limit); returns the locked file descriptor.

    ``still_current`` tells whether the bank's database is still the file the caller opened: a
    lock taken on a bank discarded (its lock file deleted) while this process waited is retried,
    or refused when the database is gone.

    Raises:
        BankBusyError: the lock stayed held by another process for ``timeout`` seconds.
        BankNotFoundError: the bank was removed while this process waited.
    """
    lock_path = bank_path / LOCK_NAME
    deadline = None if math.isinf(timeout) else time.monotonic() + timeout
    told = False
    while True:
        fd = _open_lock_file(lock_path)
        try:
            while not _try_flock(fd, lock_path):
                holder = WriterLockHolder(lock_path, _lock_holder_pid(lock_path))
                if deadline is not None and time.monotonic() >= deadline:
                    raise BankBusyError(
                        f"{bank_path}: bank is being written by another process{holder.described()}; "
                        "try again when it has finished"
                    )
                if on_wait is not None and not told:
                    on_wait(holder)
                    told = True
                time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        if _is_current_lock(fd, lock_path) and still_current():
            break
        os.close(fd)  # the bank was discarded (its lock file deleted) while this process waited
        if not still_current():
            raise BankNotFoundError(f"{bank_path}: the bank was removed while this process waited to write it")
    _record_lock_holder(fd)
    return fd


def release_writer_lock(fd: int) -> None:
    """Unlock and close a descriptor from :func:`acquire_writer_lock`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(lock_path: Path) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BankError(f"{lock_path}: cannot open the bank's lock file: {e.strerror or e}") from e


def _try_flock(fd: int, lock_path: Path) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise BankError(f"{lock_path}: cannot lock bank for writing: {e.strerror or e}") from e


def _is_current_lock(fd: int, lock_path: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock_path`` (not one deleted with its bank)."""
    try:
        return os.stat(lock_path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _record_lock_holder(fd: int) -> None:
    """Write this process's id into the lock file it holds, for the message of a waiting writer."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _lock_holder_pid(lock_path: Path) -> int | None:
    try:
        text = lock_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
