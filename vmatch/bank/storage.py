"""Bank storage: the SQLite database of a bank (schema, versioned migrations, transactions).

Layout of a bank directory::

    DIR/bank.sqlite        metadata, and the source of truth: one row per reference with its
                           id, duration, content hash, time added, frame timestamps and features
    DIR/index.<G>.faiss    FAISS index (IndexIDMap2 over inner product) of every reference frame,
                           as of generation G of the database (a cache: rebuilt if missing, stale
                           or not the file whose SHA-256 the database recorded when it was saved)
    DIR/.writer.lock       held by the one process that writes (it holds that process's id)

Creation. A bank is created only in a new directory or one holding nothing but a bank's files,
hidden files and a README. Its database is built under a temporary name and hard-linked into
place, so ``bank.sqlite`` never exists half-made: one without vmatch's tables (0 bytes, another
program's database) is refused and never written to.

Schema versions. The ``meta`` table records ``schema_version``: how many of :data:`MIGRATIONS`
the database has had. A bank made before versions were recorded is measured by what its tables
hold; each missing step is applied once, in order, in its own transaction (existing rows are
never rewritten), and a bank that needs no step is opened without being written to.

Atomicity. Each reference is added (or replaced, or removed) in one SQLite transaction (WAL
journal, ``synchronous=FULL``), which also bumps the bank's *generation*. A process killed at any
instant leaves the database at the last committed reference.

Damage. Values vmatch never writes (a generation that is not a number, a blob whose size does
not match the reference's frame count) are found where rows are read, from the stored sizes
(no blob is read for it), and reported as one :class:`BankError` naming the file and the reference.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from vmatch.errors import BankError, ModelMismatchError

FORMAT_VERSION = 1
DB_NAME = "bank.sqlite"
_INDEX_RE = re.compile(r"^index\.(\d+)\.faiss$")

#: Industry hashes of a reference (exact file hashes now; one row per hash), deleted with it.
_HASHES_TABLE = """CREATE TABLE IF NOT EXISTS hashes (
    ref_pk INTEGER NOT NULL REFERENCES refs (pk) ON DELETE CASCADE,
    signal_type TEXT NOT NULL,
    value TEXT NOT NULL,
    quality INTEGER NOT NULL DEFAULT -1,
    timestamp REAL NOT NULL DEFAULT 0,
    frame_number INTEGER NOT NULL DEFAULT 0
)"""

#: ORB keypoints of a reference's frames (vmatch.verify.LocalFeatures as bytes, numpy npz, no
#: pickle): the evidence pair verification compares a query's aligned frames with.
_LOCAL_TABLE = """CREATE TABLE IF NOT EXISTS local_features (
    ref_pk INTEGER PRIMARY KEY REFERENCES refs (pk) ON DELETE CASCADE,
    data BLOB NOT NULL
)"""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS refs (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    ref_id TEXT NOT NULL UNIQUE,
    duration REAL NOT NULL,
    n_frames INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source_name TEXT NOT NULL,
    added_at TEXT NOT NULL,
    first_fid INTEGER NOT NULL,
    timestamps BLOB NOT NULL,
    features BLOB NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS refs_sha256 ON refs (sha256)",
    _LOCAL_TABLE,
    _HASHES_TABLE,
    "CREATE INDEX IF NOT EXISTS hashes_value ON hashes (signal_type, value)",
)


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``apply`` (idempotent) brings a database of schema ``version - 1``
    to ``version``; ``applied`` tells, in a bank that records no version, whether it has it."""

    version: int
    what: str
    applied: Callable[[sqlite3.Connection], bool]
    apply: Callable[[sqlite3.Connection], None]


def _add_hashes_table(conn: sqlite3.Connection) -> None:
    for stmt in _SCHEMA[-2:]:
        conn.execute(stmt)


_VPDQ_COLUMNS = ("quality INTEGER NOT NULL DEFAULT -1", "timestamp REAL NOT NULL DEFAULT 0",
                 "frame_number INTEGER NOT NULL DEFAULT 0")


def _hash_columns(conn: sqlite3.Connection) -> set[str]:
    return {r[1] for r in conn.execute("PRAGMA table_info(hashes)")}


def _add_vpdq_columns(conn: sqlite3.Connection) -> None:
    cols = _hash_columns(conn)
    for col in _VPDQ_COLUMNS:
        if col.split()[0] not in cols:
            conn.execute(f"ALTER TABLE hashes ADD COLUMN {col}")


#: The schema's steps, in order (a new bank is created at the last one).
MIGRATIONS = (
    Migration(1, "hashes table (banks made before hashes were stored)",
              lambda conn: _has_table(conn, "hashes"), _add_hashes_table),
    Migration(2, "vPDQ columns of the hashes table (banks made before vPDQ was stored)",
              lambda conn: "frame_number" in _hash_columns(conn), _add_vpdq_columns),
    Migration(3, "local_features table (banks made before pair verification, issue 14)",
              lambda conn: _has_table(conn, "local_features"), lambda conn: conn.execute(_LOCAL_TABLE)),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
#: Meta key of the schema version of a database (the last of :data:`MIGRATIONS` applied to it).
SCHEMA_VERSION_KEY = "schema_version"

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _set_wal(conn: sqlite3.Connection, *, timeout: float = 30.0) -> None:
    """Switch to WAL. Changing the journal mode does not wait on SQLite's busy handler, so two
    processes opening a brand-new bank together get "database is locked": retry for a while."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _corrupted(db: Path, e: Exception) -> BankError:
    if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
        return BankError(f"{db}: bank is locked by another process for too long ({e}); try again")
    return BankError(
        f"{db}: bank is corrupted or unreadable ({e}); restore it from a backup or re-index into a new bank"
    )


def _reads(method):
    """A read of the database that fails (damaged pages, missing table) is a BankError, not a
    raw sqlite3 error: the bank is corrupted."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise _corrupted(self.path / DB_NAME, e) from e

    return wrapper


def _damaged(db: Path, what: str) -> BankError:
    """The error for a bank whose database holds values vmatch never writes (a row's blob of the
    wrong size, a meta value that is not a number): one line naming the file and the fix."""
    return BankError(f"{db}: {what}; the bank is damaged: re-index it or restore a backup")


def _foreign(db: Path) -> BankError:
    try:
        empty = db.stat().st_size == 0
    except OSError:
        empty = False
    what = "an empty file" if empty else "a database without vmatch's tables"
    return BankError(
        f"{db}: not a vmatch bank ({what}); it was left as it is: use another --bank directory, "
        "or move the file away"
    )


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?", (name,)
    ).fetchone()[0] > 0


def _is_vmatch_database(conn: sqlite3.Connection) -> bool:
    """Whether the database was made by vmatch: a ``meta`` table of key/value rows that names a
    model. Checked by reading only, before anything is written (another program's database may
    well have a table called ``meta``)."""
    if not _has_table(conn, "meta"):
        return False
    try:
        row = conn.execute("SELECT count(*) FROM meta WHERE key IN ('format_version', 'model_spec')").fetchone()
    except sqlite3.OperationalError:  # no such column: not vmatch's meta table
        return False
    return row[0] > 0



def _recorded_schema_version(conn: sqlite3.Connection) -> int | None:
    """The schema version the meta table records; None for a bank made before it recorded one."""
    row = conn.execute("SELECT value FROM meta WHERE key=?", (SCHEMA_VERSION_KEY,)).fetchone()
    try:
        return int(row[0]) if row is not None else None
    except (TypeError, ValueError):
        return None  # not a version vmatch wrote: measured from the tables, as an unrecorded one


def _detected_schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of a bank that records none: the steps its tables already have."""
    version = 0
    for m in MIGRATIONS:
        if not m.applied(conn):
            break
        version = m.version
    return version


def _has_step(conn: sqlite3.Connection, m: Migration) -> bool:
    recorded = _recorded_schema_version(conn)
    return m.applied(conn) if recorded is None else recorded >= m.version


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a bank made by an older vmatch up to the current schema: each step of
    :data:`MIGRATIONS` it lacks, once, in order, each in one transaction that also records the
    version reached (tables and columns added since; existing rows are never rewritten). A bank
    already current is not written to."""
    for m in MIGRATIONS:
        if _has_step(conn, m):
            continue
        with _txn(conn, immediate=True):
            if _has_step(conn, m):  # another process migrated it meanwhile
                continue
            recorded = _recorded_schema_version(conn)
            m.apply(conn)
            version = m.version if recorded is not None else _detected_schema_version(conn)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SCHEMA_VERSION_KEY, str(version)))


def check_bank(conn: sqlite3.Connection, p: Path, model) -> str:
    """Check that ``conn`` is a vmatch bank of ``model`` (None: any), set it up (WAL, full sync,
    foreign keys) and migrate it; returns its model spec (JSON).

    A file without vmatch's tables (a 0-byte file, another program's database) is refused
    before anything is written to it: only :func:`_create_database` makes a bank."""
    from vmatch.models import ModelSpec

    db = p / DB_NAME
    try:
        if not _is_vmatch_database(conn):
            raise _foreign(db)
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        conn.execute("SELECT pk FROM refs LIMIT 1").fetchall()  # the other table is there too
        _migrate(conn)
    except sqlite3.DatabaseError as e:
        raise _corrupted(db, e) from e
    try:
        fv = int(meta["format_version"])
        spec_json = meta["model_spec"]
        stored = ModelSpec.from_dict(json.loads(spec_json))
    except (KeyError, ValueError, TypeError) as e:
        raise BankError(f"{db}: bank metadata is corrupted ({e!r}); re-index into a new bank") from e
    if fv > FORMAT_VERSION:
        raise BankError(
            f"{db}: bank format {fv} is newer than this vmatch understands ({FORMAT_VERSION}); "
            "upgrade vmatch"
        )
    if model is not None and model.model_id != stored.model_id:
        raise ModelMismatchError(
            f"{p}: bank holds embeddings of model {stored.model_id}, not {model.model_id}; "
            "use a bank made with the same model, or a new bank"
        )
    return spec_json


def meta_int(conn: sqlite3.Connection, db: Path, key: str) -> int:
    """A whole-number value of the meta table (``generation``, ``next_fid``), else the
    BankError of a damaged bank (never a ValueError traceback, never a silent repair)."""
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    if row is None:
        raise _damaged(db, f"the meta table has no {key!r}")
    try:
        value = int(row[0])
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise _damaged(db, f"meta {key!r} is {row[0]!r:.40}, not a whole number")
    return value


def bump_generation(conn: sqlite3.Connection, db: Path) -> None:
    """Advance the generation by one (inside the writer's transaction)."""
    gen = meta_int(conn, db, "generation")
    conn.execute("UPDATE meta SET value = ? WHERE key='generation'", (str(gen + 1),))


@contextlib.contextmanager
def _txn(conn: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def _db_write_error(path: Path, what: str, e: sqlite3.Error) -> BankError:
    msg = str(e)
    if "full" in msg.lower():
        return BankError(f"{path}: disk full while writing {what}; nothing was written for it")
    return BankError(f"{path}: could not write {what} ({msg}); nothing was written for it")
