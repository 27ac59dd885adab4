"""The files of a bank directory: which belong to a bank, creating a new bank's database
atomically, and removing a bank again.

A bank is created only in a new directory or one holding nothing but a bank's files, hidden
files and a README. Its database is built under a temporary name and hard-linked into place, so
``bank.sqlite`` never exists half-made. A handle that created a bank and stored nothing in it can
remove it again (:meth:`vmatch.bank.Bank.discard_if_empty`): only the bank's own files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Callable

from vmatch.bank.lock import LOCK_NAME
from vmatch.bank.storage import (
    _INDEX_RE,
    _SCHEMA,
    DB_NAME,
    FORMAT_VERSION,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    _now,
    _txn,
)
from vmatch.errors import BankError

#: The database of a bank and SQLite's files beside it.
_DB_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")


def _is_bank_file(name: str) -> bool:
    """Whether a file of this name is one a bank writes (besides its lock file)."""
    return name in _DB_FILES or bool(_INDEX_RE.match(name)) or name.startswith((".tmp-index.", ".tmp-bank."))


def _bank_owned(entry: Path) -> bool:
    """Whether ``entry`` may sit in a directory a new bank is created in: what a bank holds,
    hidden files (the lock, ``.gitkeep``) and a README (the committed note of the default
    ``./index``)."""
    name = entry.name
    if _is_bank_file(name) or name.startswith("."):
        return True
    return name.upper().startswith("README") and entry.is_file()


def _prepare_new_bank_dir(p: Path, allow: Callable[[Path], bool] = _bank_owned) -> bool:
    """Make sure a new bank may be created in directory ``p``; returns whether it was made here.

    A bank is created only in a new directory or one holding nothing but entries ``allow``
    accepts (:func:`_bank_owned`), so that a mistyped ``--bank`` never mixes a bank into a
    folder of other files."""
    if p.exists() and not p.is_dir():
        raise BankError(f"{p}: exists and is not a directory")
    try:
        p.mkdir(parents=True)
        return True
    except FileExistsError:
        pass
    except OSError as e:
        raise BankError(f"{p}: cannot create bank directory: {e.strerror or e}") from e
    try:
        strangers = sorted(e.name for e in p.iterdir() if not allow(e))
    except OSError as e:
        raise BankError(f"{p}: cannot read the directory: {e.strerror or e}") from e
    if strangers:
        more = f" and {len(strangers) - 1} more" if len(strangers) > 1 else ""
        raise BankError(
            f"{p}: holds no bank but other files ({strangers[0]!r}{more}); a new bank is made only in a "
            "new or empty directory: choose another --bank"
        )
    return False


def _create_database(db: Path, spec) -> bool:
    """Create the database of a new bank at ``db`` atomically; False if another process created
    one there first (then that one is used).

    The schema and metadata are written to a temporary file that is then hard-linked to ``db``
    (which fails if ``db`` exists), so ``bank.sqlite`` never exists half-made: a ``bank.sqlite``
    without vmatch's tables is never a bank being created, always a foreign file."""
    tmp = db.with_name(f".tmp-bank.{os.getpid()}.{secrets.token_hex(4)}.sqlite")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with _txn(conn, immediate=True):
                for stmt in _SCHEMA:  # (executescript would commit the open transaction)
                    conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("format_version", str(FORMAT_VERSION)),
                        ("model_spec", spec.to_json()),
                        ("model_id", spec.model_id),
                        ("dim", str(spec.dim)),
                        ("generation", "0"),
                        ("next_fid", "0"),
                        ("created_at", _now()),
                        (SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)),
                    ],
                )
        finally:
            conn.close()  # the last connection: SQLite folds the WAL into the file and removes it
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        won = _link_new(tmp, db)
        _fsync_dir(db.parent)
        return won
    except (OSError, sqlite3.Error) as e:
        raise BankError(f"{db}: cannot create the bank: {getattr(e, 'strerror', None) or e}") from e
    finally:
        for f in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(OSError):
                f.unlink()


def _link_new(src: Path, dest: Path) -> bool:
    """Give file ``src`` the name ``dest`` unless ``dest`` exists; returns whether it did."""
    try:
        os.link(src, dest)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    # A file system without hard links: a rename after a check (a tiny race between creators).
    if dest.exists():
        return False
    os.replace(src, dest)
    return True


#: The sizes of a reference's two blobs, read from the row's header without reading the blobs

def _remove_bank_files(path: Path, *, remove_dir: bool) -> None:
    """Delete what a bank holds in ``path`` (never anything else), the lock file last; then the
    directory itself if ``remove_dir`` and it is empty."""
    for f in path.iterdir():
        if _is_bank_file(f.name):
            with contextlib.suppress(OSError):
                f.unlink()
    with contextlib.suppress(OSError):
        (path / LOCK_NAME).unlink()
    if remove_dir:
        with contextlib.suppress(OSError):
            path.rmdir()
    _fsync_dir(path.parent)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


