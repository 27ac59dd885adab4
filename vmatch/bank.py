"""The bank: reference frame embeddings in FAISS plus their metadata in SQLite.

Where it sits: embed -> **bank** (add / remove / search) -> align.

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
program's database) is refused and never written to. A handle that created a bank and stored
nothing in it can remove it again (:meth:`Bank.discard_if_empty`).

Atomicity. Each reference is added (or replaced, or removed) in one SQLite transaction (WAL
journal, ``synchronous=FULL``), which also bumps the bank's *generation*. A process killed at any
instant leaves the database at the last committed reference. The FAISS file is written to a
temporary name, fsynced, recorded (generation and SHA-256) in the database and renamed; a reader
uses it only if it is that file, and brings its in-memory copy up to date from the database
(adding the missing frames, removing the deleted ones) without writing anything. So an
interrupted ``index`` leaves the bank as it was after the last complete file, never half-written,
always loadable.

Damage. Values vmatch never writes (a generation that is not a number, a blob whose size does
not match the reference's frame count) are found where rows are read, from the stored sizes
(no blob is read for it), and reported as one :class:`BankError` naming the file and the reference.

Concurrency. One writer at a time (an exclusive ``flock`` on ``.writer.lock``); any number of
readers, each of which sees one consistent generation (a single read transaction), never half of
a change. A long write (``vmatch index``) takes the lock once at its start
(:meth:`Bank.lock_for_writing`) and waits for it as long as it takes, or refuses at once.

Privacy. Only embeddings and metadata are stored: never frames, never media.

No pickle anywhere: SQLite rows, little-endian numpy buffers and FAISS's own format.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vmatch.errors import BankError, BankNotFoundError, ModelMismatchError, UsageError
from vmatch.signals.exact import EXACT_SIGNAL_TYPES
from vmatch.types import ReferenceInfo, VideoEmbedding

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DB_NAME = "bank.sqlite"
LOCK_NAME = ".writer.lock"
#: Meta key of the record of the FAISS file saved last (JSON: generation, sha256).
INDEX_RECORD_KEY = "index_file"
#: Seconds a write waits for the writer lock when the handle did not take it with
#: :meth:`Bank.lock_for_writing` (the API and the HTTP service, whose requests must not hang).
WRITER_WAIT_S = 30.0
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
#: Image PDQ hashes (from shared lists): a video matches when one of its frames is within 31 bits.
PDQ = "pdq"
#: Signal types of one-line-per-hash lists (`vmatch import` / `export`).
LIST_SIGNAL_TYPES = (*EXACT_SIGNAL_TYPES, PDQ)
#: vPDQ rows: one per sampled frame (value = PDQ hex, with quality, timestamp, frame number).
VPDQ = "vpdq"

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


#: Longest reference id, in UTF-8 bytes: a file named after it (``export``) can always be created.
MAX_REF_ID_BYTES = 255
#: Unicode categories refused in reference ids: control (Cc) and format (Cf: zero-width and
#: bidirectional marks such as U+200B, U+202E, U+2066, U+FEFF) characters hide or disguise a name;
#: lone surrogates (Cs) cannot be written as UTF-8; line and paragraph separators (Zl, Zp) break
#: the line-per-hash lists of ``import`` / ``export``.
_REFUSED_ID_CATEGORIES = {"Cc": "control characters", "Cf": "invisible format characters",
                          "Cs": "lone surrogates", "Zl": "line separators", "Zp": "paragraph separators"}


def validate_ref_id(ref_id: str) -> str:
    """Return ``ref_id`` if it is a usable reference id, else raise UsageError saying why.

    An id names files (``export``), lines of hash lists and rows shown to people, so it must be
    visible and unambiguous: 1 to 255 UTF-8 bytes, no ``/``, ``\\`` or NUL, not ``.`` or ``..``,
    no control or format character (listed as U+XXXX), no leading or trailing whitespace. Checked
    when an id is written; ids already stored are read whatever they are.
    """
    if not isinstance(ref_id, str) or not ref_id:
        raise UsageError(f"invalid reference id {ref_id!r}: it must be a non-empty text")
    problem = _ref_id_problem(ref_id)
    if problem is not None:
        raise UsageError(f"invalid reference id {ref_id!r:.80}: {problem}")
    return ref_id


def _ref_id_problem(ref_id: str) -> str | None:
    """What makes ``ref_id`` unusable as a reference id (see :func:`validate_ref_id`), or None."""
    if ref_id in (".", ".."):
        return "'.' and '..' name directories, not references"
    for c in ref_id:
        if c in "/\\":
            return f"{c!r} is not allowed (it separates directories)"
        category = unicodedata.category(c)
        if category in _REFUSED_ID_CATEGORIES:
            name = unicodedata.name(c, "")
            label = f"U+{ord(c):04X}" + (f" ({name})" if name else "")
            return f"character {label} is not allowed ({_REFUSED_ID_CATEGORIES[category]} hide or disguise names)"
    if ref_id.strip() != ref_id:
        return "leading or trailing whitespace is not allowed"
    size = len(ref_id.encode("utf-8"))
    if size > MAX_REF_ID_BYTES:
        return f"{size} bytes in UTF-8; at most {MAX_REF_ID_BYTES} are allowed"
    return None


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


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a bank made by an older vmatch up to the current schema (tables and columns added
    since; existing rows are never rewritten)."""
    if not _has_table(conn, "hashes"):  # a bank made before hashes were stored: add the (empty) table
        with _txn(conn, immediate=True):
            for stmt in _SCHEMA[-2:]:
                conn.execute(stmt)
    if not _has_table(conn, "local_features"):  # a bank made before pair verification (issue 14)
        with _txn(conn, immediate=True):
            conn.execute(_LOCAL_TABLE)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(hashes)")}
    if "frame_number" not in cols:  # a bank made before vPDQ was stored
        with _txn(conn, immediate=True):
            for col in ("quality INTEGER NOT NULL DEFAULT -1", "timestamp REAL NOT NULL DEFAULT 0",
                        "frame_number INTEGER NOT NULL DEFAULT 0"):
                if col.split()[0] not in cols:
                    conn.execute(f"ALTER TABLE hashes ADD COLUMN {col}")


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
#: themselves (None where the value is not a blob).
_BLOB_SIZES = ("CASE typeof(timestamps) WHEN 'blob' THEN length(timestamps) END, "
               "CASE typeof(features) WHEN 'blob' THEN length(features) END")
#: The columns of a :class:`ReferenceInfo`, then :data:`_BLOB_SIZES`.
_INFO_COLUMNS = f"ref_id, duration, n_frames, sha256, added_at, source_name, extra, {_BLOB_SIZES}"


def _check_ref_row(db: Path, dim: int, ref_id, duration, n_frames, ts_bytes, feat_bytes) -> None:
    """Check that one stored reference is self-consistent from its sizes alone (cheap: no blob
    is read): a count of frames, one float64 timestamp and ``dim`` float32 features per frame,
    a finite duration. Raises the BankError of a damaged bank naming the reference."""
    what = f"reference {ref_id!r:.80}"
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 0:
        raise _damaged(db, f"{what} has n_frames {n_frames!r:.40}, not a count of frames")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not np.isfinite(duration) or duration < 0:
        raise _damaged(db, f"{what} has duration {duration!r:.40}, not a number of seconds")
    if ts_bytes is None or ts_bytes % 8:
        raise _damaged(db, f"{what} has timestamps of {ts_bytes} bytes, not whole float64 values")
    if ts_bytes // 8 != n_frames:
        raise _damaged(db, f"{what} has {ts_bytes // 8} frames of timestamps but n_frames {n_frames}")
    if feat_bytes != n_frames * dim * 4:
        raise _damaged(db, f"{what} has {feat_bytes} bytes of features, not {n_frames} frames x {dim} "
                           "dimensions x 4 bytes")


def _timestamps(db: Path, ref_id: str, blob: bytes) -> np.ndarray:
    """The frame times of a reference (float64), which must be finite and non-decreasing."""
    ts = np.frombuffer(blob, dtype="<f8").astype(np.float64)
    if ts.size and (not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0)):
        raise _damaged(db, f"reference {ref_id!r:.80} has timestamps that are not finite and increasing")
    return ts


def _ref_info(db: Path, dim: int, row) -> ReferenceInfo:
    """A :class:`ReferenceInfo` from a row of :data:`_INFO_COLUMNS`, checked (see :func:`_check_ref_row`)."""
    rid, duration, n_frames, sha256, added_at, source_name, extra, ts_bytes, feat_bytes = row
    _check_ref_row(db, dim, rid, duration, n_frames, ts_bytes, feat_bytes)
    try:
        details = json.loads(extra or "{}")
        if not isinstance(details, dict):
            raise ValueError("not an object")
    except (TypeError, ValueError) as e:
        raise _damaged(db, f"reference {rid!r:.80} has unreadable details ({e})") from e
    return ReferenceInfo(rid, float(duration), n_frames, sha256, added_at, source_name, details)


@dataclass(frozen=True)
class FrameHits:
    """Result of a frame-level search: for each query frame, the k best reference frames.

    ``ref_index`` [Nq, k] indexes :attr:`BankSnapshot.ref_ids` (-1 where no hit), ``frame_index``
    [Nq, k] the frame inside that reference, ``similarity`` [Nq, k] the raw inner product.
    """

    ref_index: np.ndarray
    frame_index: np.ndarray
    similarity: np.ndarray


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


@dataclass(frozen=True)
class _IndexRecord:
    """What the database says of the FAISS file saved last: its generation and SHA-256."""

    generation: int
    sha256: str


@dataclass(frozen=True)
class _FrameRow:
    """One stored reference that has frames, as snapshots and frame tables read it (checked)."""

    pk: int
    ref_id: str
    first_fid: int
    n_frames: int
    duration: float
    timestamps: np.ndarray


class _VPDQTable:
    """The bank's vPDQ frames of one generation, with a FAISS binary index over their hashes."""

    def __init__(self, ref_ids: list[str], frames: dict[str, list], ref_of_row: np.ndarray, index) -> None:
        self.ref_ids = ref_ids  # references that carry vPDQ
        self.frames = frames  # ref_id -> list[VPDQFrame]
        self.ref_of_row = ref_of_row  # FAISS row -> position in ref_ids
        self.index = index

    @classmethod
    def build(cls, rows) -> "_VPDQTable | None":
        if not rows:
            return None
        from vmatch.signals.vpdq import VPDQFrame, build_binary_index, pack_frames

        frames: dict[str, list] = {}
        for rid, hx, q, ts, fn in rows:
            frames.setdefault(rid, []).append(VPDQFrame(frame_number=fn, hex=hx, quality=q, timestamp=ts))
        ref_ids = list(frames)
        all_frames = [f for r in ref_ids for f in frames[r]]
        ref_of_row = np.repeat(np.arange(len(ref_ids)), [len(frames[r]) for r in ref_ids])
        return cls(ref_ids, frames, ref_of_row, build_binary_index(pack_frames(all_frames)))


class _Snapshot:
    """One consistent generation of the bank held in memory for searching."""

    def __init__(
        self,
        generation: int,
        dim: int,
        ref_ids: list[str],
        first_fids: np.ndarray,
        n_frames: np.ndarray,
        timestamps: list[np.ndarray],
        durations: np.ndarray,
        index,  # faiss.IndexIDMap2
    ) -> None:
        self.generation = generation
        self.dim = dim
        self.ref_ids = ref_ids
        self.first_fids = first_fids
        self.n_frames = n_frames
        self.timestamps = timestamps
        self.durations = durations
        self.index = index
        self.ref_pos = {r: i for i, r in enumerate(ref_ids)}
        self.vpdq: _VPDQTable | None = None
        self.pdq = None  # (ref id per row, FAISS binary index) of image PDQ hashes, if any
        self.searcher = index  # what frame search uses: the index, or its GPU copy (ann.GpuFlatSearcher)
        self.local: dict = {}  # ref id -> vmatch.verify.LocalFeatures read so far (verification)


class Bank:
    """A bank of reference videos. Open with :meth:`Bank.open` (or :meth:`Bank.create`).

    Example:
        >>> bank = Bank.open("index", create=True, model="effnet-lite0-gem")   # doctest: +SKIP
        >>> bank.add("known/clip.mp4")                                          # doctest: +SKIP
        >>> report = bank.match("upload.mp4")                                   # doctest: +SKIP
        >>> [(m.reference, m.score) for m in report.matches]                    # doctest: +SKIP
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, spec_json: str, *, device: str,
                 search_gpu: int | None = None) -> None:
        self.path = path
        self._conn = conn
        self._spec_json = spec_json
        self._device = device
        self._search_gpu = search_gpu  # GPU number for frame search (faiss-gpu), None: CPU
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._snapshot: _Snapshot | None = None
        self._embedder = None
        self._background = None
        self._dirty = False
        self._closed = False
        self._warned: set[str] = set()  # cache files already reported as not matching the database
        #: Whether this handle created the bank (so :meth:`discard_if_empty` may delete it again).
        self.created = False
        self._created_dir = False
        self._db_inode: int | None = None  # of the bank.sqlite this handle opened

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike, *, model=None, device: str = "auto") -> "Bank":
        """Create a new empty bank at ``path`` for ``model`` (a ModelSpec or registry name)."""
        p = Path(path)
        if (p / DB_NAME).exists():
            raise BankError(f"{p}: a bank already exists here; open it with Bank.open")
        return cls.open(p, create=True, model=model, device=device)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = False,
        model=None,
        device: str = "auto",
        search_device: str = "cpu",
    ) -> "Bank":
        """Open the bank at ``path``.

        Args:
            path: the bank directory.
            create: create an empty bank if none exists: in a new directory, or an existing one
                that holds nothing else than a bank's files, hidden files and a README; an
                existing ``bank.sqlite`` that is not a vmatch bank (e.g. 0 bytes) is refused
                and left as it is.
            model: for a new bank, the model (ModelSpec or registry name; default model if None).
                For an existing bank, if given, it must be the bank's model, else
                :class:`ModelMismatchError`.
            device: where the bank's embedder runs when it embeds videos ("auto", "cpu", "cuda").
            search_device: where frame search runs: "cpu" (default, the FAISS index itself) or
                "cuda"/"cuda:N" (an exact copy on the GPU per snapshot; needs the ``gpu`` extra).

        Raises:
            BankNotFoundError: no bank at ``path`` and ``create`` is false.
            BankError: the bank is corrupted or unreadable, or not a vmatch bank, or the directory
                to create it in holds other files (the message says which file).
            ModelMismatchError: ``model`` differs from the bank's model.
        """
        from vmatch.ann import check_search_device
        from vmatch.models import get_model_spec

        search_gpu = check_search_device(search_device)
        p = Path(path)
        db = p / DB_NAME
        if isinstance(model, str):
            model = get_model_spec(model)
        created = created_dir = False
        if not db.exists():
            if not create:
                raise BankNotFoundError(
                    f"{p}: no bank here ({DB_NAME} missing); create one with `vmatch index --bank {p} ...`"
                )
            created_dir = _prepare_new_bank_dir(p)
            created = _create_database(db, model if model is not None else get_model_spec())
        try:
            conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise _corrupted(db, e) from e
        try:
            bank = cls._from_connection(p, conn, model, device=device, search_gpu=search_gpu)
            bank._db_inode = _inode(db)
        except BaseException:
            conn.close()
            raise
        bank.created, bank._created_dir = created, created_dir
        return bank

    @classmethod
    def _from_connection(cls, p: Path, conn: sqlite3.Connection, model, *, device: str,
                         search_gpu: int | None) -> "Bank":
        """Check that ``conn`` is a vmatch bank of ``model`` (None: any) and wrap it.

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
        return cls(p, conn, spec_json, device=device, search_gpu=search_gpu)

    # ------------------------------------------------------------------ properties
    @property
    def spec(self):
        """The :class:`~vmatch.models.ModelSpec` of every embedding in this bank."""
        from vmatch.models import ModelSpec

        return ModelSpec.from_dict(json.loads(self._spec_json))

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    @_reads
    def generation(self) -> int:
        return self._meta_int("generation")

    def _meta_int(self, key: str) -> int:
        """A whole-number value of the meta table (``generation``, ``next_fid``), else the
        BankError of a damaged bank (never a ValueError traceback, never a silent repair)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            raise _damaged(self.path / DB_NAME, f"the meta table has no {key!r}")
        try:
            value = int(row[0])
        except (TypeError, ValueError):
            value = -1
        if value < 0:
            raise _damaged(self.path / DB_NAME, f"meta {key!r} is {row[0]!r:.40}, not a whole number")
        return value

    def _bump_generation(self) -> None:
        """Advance the generation by one (inside the writer's transaction)."""
        gen = self._meta_int("generation")
        self._conn.execute("UPDATE meta SET value = ? WHERE key='generation'", (str(gen + 1),))

    def close(self) -> None:
        """Save the FAISS index if this process changed the bank, release the writer lock."""
        if self._closed:
            return
        try:
            if self._dirty:
                self.save_index()
        finally:
            self._release_writer()
            self._conn.close()
            self._closed = True

    def __enter__(self) -> "Bank":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writer lock
    def lock_for_writing(self, *, wait: bool = True,
                         on_wait: Callable[[WriterLockHolder], None] | None = None) -> None:
        """Take the bank's writer lock now and hold it until :meth:`close`.

        A run that writes many files (``vmatch index``) calls this once, before any decoding,
        so that beside another writer it waits (or refuses) at the start instead of losing
        files one by one when a per-write wait runs out.

        Args:
            wait: True: wait as long as it takes; False: raise :class:`BankBusyError` at once
                when another process holds the lock.
            on_wait: called once, with the holder, when the lock is held by another process
                (e.g. to tell the user what the run waits for).

        Raises:
            BankBusyError: ``wait`` is False and another process writes the bank.
            KeyboardInterrupt: Ctrl-C while waiting (nothing is held then).
        """
        with self._lock:
            self._acquire_writer(timeout=math.inf if wait else 0.0, on_wait=on_wait)

    def _acquire_writer(self, timeout: float | None = None,
                        on_wait: Callable[[WriterLockHolder], None] | None = None) -> None:
        """Hold the writer lock (an exclusive ``flock`` on ``.writer.lock``) from now until close;
        wait up to ``timeout`` seconds for it (None: :data:`WRITER_WAIT_S`; ``math.inf``: without
        limit). The first write of a handle that did not call :meth:`lock_for_writing` takes it here."""
        if self._lock_fd is not None:
            return
        lock_path = self.path / LOCK_NAME
        timeout = WRITER_WAIT_S if timeout is None else timeout
        deadline = None if math.isinf(timeout) else time.monotonic() + timeout
        told = False
        while True:
            fd = _open_lock_file(lock_path)
            try:
                while not _try_flock(fd, lock_path):
                    holder = WriterLockHolder(lock_path, _lock_holder_pid(lock_path))
                    if deadline is not None and time.monotonic() >= deadline:
                        raise BankBusyError(
                            f"{self.path}: bank is being written by another process{holder.described()}; "
                            "try again when it has finished"
                        )
                    if on_wait is not None and not told:
                        on_wait(holder)
                        told = True
                    time.sleep(0.1)
            except BaseException:
                os.close(fd)
                raise
            if _is_current_lock(fd, lock_path) and self._db_is_current():
                break
            os.close(fd)  # the bank was discarded (its lock file deleted) while this process waited
            if not self._db_is_current():
                raise BankNotFoundError(f"{self.path}: the bank was removed while this process waited to write it")
        _record_lock_holder(fd)
        self._lock_fd = fd
        self._cleanup_temp_files()

    def _db_is_current(self) -> bool:
        """Whether ``bank.sqlite`` is still the file this handle opened (not deleted, or replaced,
        by a run that discarded the bank meanwhile: writes to it would be lost)."""
        try:
            return self._db_inode is None or os.stat(self.path / DB_NAME).st_ino == self._db_inode
        except OSError:
            return False

    def _release_writer(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def discard_if_empty(self) -> bool:
        """Close this handle and, when it created the bank and the bank holds nothing (no
        reference, no hash), delete the bank again; returns whether it did.

        A run that created a bank and then stored nothing (every input unreadable, a bad option
        found late) must not leave an empty bank behind. An existing bank is never deleted, nor
        one that another process is writing (its lock is not free)."""
        with self._lock:
            if not (self.created and self._claim_if_empty()):
                self.close()
                return False
            self._conn.close()
            self._closed = True
            try:
                _remove_bank_files(self.path, remove_dir=self._created_dir)
            finally:
                self._release_writer()
        return True

    def _cleanup_temp_files(self) -> None:
        for f in self.path.glob(".tmp-index.*"):
            with contextlib.suppress(OSError):
                f.unlink()

    def _claim_if_empty(self) -> bool:
        """Take the writer lock if it is free and tell whether the bank holds nothing at all."""
        if self._closed:
            return False
        try:
            self._acquire_writer(timeout=0.0)
            if self._conn.execute("SELECT 1 FROM refs LIMIT 1").fetchone():
                return False
            return not self._conn.execute("SELECT 1 FROM hashes LIMIT 1").fetchone()
        except (BankError, sqlite3.Error):
            return False

    # ------------------------------------------------------------------ writes
    def add(
        self,
        item,
        *,
        ref_id: str | None = None,
        fps: float = 1.0,
        source_name: str = "",
        extra: dict | None = None,
    ) -> ReferenceInfo:
        """Add (or replace) one reference.

        Args:
            item: a :class:`VideoEmbedding` (embedded elsewhere with this bank's model), or the
                path of a video file, which is then decoded and embedded with the bank's model.
            ref_id: the reference id; default: the embedding's ``video_id`` / the file name
                without extension. An existing reference with this id is replaced atomically.
            fps: sampling rate for a video file.
            source_name: a note of where it came from (for an embedding; a file's own name is used
                for a path); the media itself is never stored. A path also stores the file's
                MD5 and SHA-1.

        Returns:
            The stored :class:`ReferenceInfo`.
        """
        if not isinstance(item, VideoEmbedding):
            from vmatch.index import add_video

            emb = add_video(self, Path(item), self.embedder(), fps=fps, ref_id=ref_id)
            return self.get(emb.video_id)
        return self.add_embedding(item, ref_id=ref_id, source_name=source_name, extra=extra)

    def add_embedding(
        self,
        emb: VideoEmbedding,
        *,
        ref_id: str | None = None,
        source_name: str = "",
        extra: dict | None = None,
        hashes: dict[str, str] | None = None,
        vpdq: list | None = None,
    ) -> ReferenceInfo:
        """Store one :class:`VideoEmbedding` as a reference (replacing one of the same id).

        ``hashes``: exact hashes of the source file, e.g. ``{"md5": ..., "sha1": ...}``; ``vpdq``:
        its vPDQ frames (:class:`vmatch.signals.vpdq.VPDQFrame`); stored in the same transaction.
        """
        hash_rows = [(t, v, -1, 0.0, 0) for t, v in _check_hashes(hashes or {})]
        hash_rows += [(VPDQ, f.hex, f.quality, f.timestamp, f.frame_number) for f in (vpdq or [])]
        rid = validate_ref_id(ref_id if ref_id is not None else emb.video_id)
        if emb.model_id != self.model_id:
            raise ModelMismatchError(
                f"{rid}: embedding made with model {emb.model_id}, but bank {self.path} holds "
                f"model {self.model_id}"
            )
        if emb.dim != self.spec.dim:
            raise ModelMismatchError(f"{rid}: embedding dimension {emb.dim} != bank dimension {self.spec.dim}")
        if len(emb) == 0:
            raise UsageError(f"{rid}: no frames to add")
        feats = np.ascontiguousarray(emb.features, dtype="<f4")
        ts = np.ascontiguousarray(emb.timestamps, dtype="<f8")
        local = None
        if emb.local is not None:  # keypoints as stored: static flags set, the kept ones chosen (once)
            from vmatch.verify import prepare_reference

            prepared = emb.local if emb.local.reference else prepare_reference(emb.local, emb.timestamps)
            local = prepared.to_bytes()
        added = _now()
        with self._lock:
            self._acquire_writer()
            conn = self._conn
            try:
                with _txn(conn, immediate=True):
                    next_fid = self._meta_int("next_fid")
                    conn.execute("DELETE FROM refs WHERE ref_id = ?", (rid,))
                    conn.execute(
                        "INSERT INTO refs (ref_id, duration, n_frames, sha256, source_name, added_at,"
                        " first_fid, timestamps, features, extra) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            rid,
                            float(emb.duration),
                            len(emb),
                            emb.sha256,
                            source_name,
                            added,
                            next_fid,
                            ts.tobytes(),
                            feats.tobytes(),
                            json.dumps(extra or {}, sort_keys=True),
                        ),
                    )
                    pk = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                    if local is not None:
                        conn.execute("INSERT INTO local_features (ref_pk, data) VALUES (?, ?)", (pk, local))
                    conn.executemany(
                        "INSERT INTO hashes (ref_pk, signal_type, value, quality, timestamp, frame_number)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(pk, *row) for row in hash_rows],
                    )
                    conn.execute(
                        "UPDATE meta SET value = ? WHERE key='next_fid'", (str(next_fid + len(emb)),)
                    )
                    self._bump_generation()
            except sqlite3.Error as e:
                raise _db_write_error(self.path, rid, e) from e
            self._dirty = True
            self._snapshot = None
        return ReferenceInfo(
            reference=rid,
            duration=float(emb.duration),
            n_frames=len(emb),
            sha256=emb.sha256,
            added_at=added,
            source_name=source_name,
            extra=dict(extra or {}),
        )

    def add_hashes(self, items: list[tuple[str, str, str]]) -> int:
        """Import hashes without media: ``(ref_id, signal_type, value)`` triples, in one transaction.

        A reference that does not exist yet is created without frames (a *hash-only* reference:
        found by its hashes, never by the CNN). Hashes already stored are not duplicated.

        Returns:
            The number of hashes newly stored.
        """
        checked = [(validate_ref_id(r), *_check_hashes({t: v})[0]) for r, t, v in items]
        added = 0
        with self._lock:
            self._acquire_writer()
            conn = self._conn
            try:
                with _txn(conn, immediate=True):
                    for rid, t, v in checked:
                        pk = self._ref_pk_for_hashes(rid, duration=0.0)
                        if conn.execute(
                            "SELECT 1 FROM hashes WHERE ref_pk=? AND signal_type=? AND value=?", (pk, t, v)
                        ).fetchone() is None:
                            conn.execute("INSERT INTO hashes (ref_pk, signal_type, value) VALUES (?,?,?)", (pk, t, v))
                            added += 1
                    self._bump_generation()
            except sqlite3.Error as e:
                raise _db_write_error(self.path, f"{len(items)} imported hashes", e) from e
            self._snapshot = None
        return added

    def _ref_pk_for_hashes(self, rid: str, *, duration: float) -> int:
        """Row of reference ``rid``, created as a hash-only reference (no frames) if it does not
        exist. Call inside the writer's transaction."""
        conn = self._conn
        row = conn.execute("SELECT pk FROM refs WHERE ref_id=?", (rid,)).fetchone()
        if row is not None:
            return int(row[0])
        next_fid = self._meta_int("next_fid")
        conn.execute(
            "INSERT INTO refs (ref_id, duration, n_frames, sha256, source_name, added_at,"
            " first_fid, timestamps, features, extra) VALUES (?,?,0,'','',?,?,?,?,?)",
            (rid, duration, _now(), next_fid, b"", np.zeros((0, self.spec.dim), "<f4").tobytes(),
             json.dumps({"hash_only": True})),
        )
        return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])

    def add_vpdq(self, ref_id: str, frames: list) -> int:
        """Import a vPDQ hash (list of :class:`~vmatch.signals.vpdq.VPDQFrame`) for ``ref_id``,
        replacing its previous vPDQ; creates a hash-only reference if needed. Returns the frame count."""
        rid = validate_ref_id(ref_id)
        if not frames:
            raise UsageError(f"{rid}: empty vPDQ hash; nothing to import")
        with self._lock:
            self._acquire_writer()
            conn = self._conn
            try:
                with _txn(conn, immediate=True):
                    pk = self._ref_pk_for_hashes(rid, duration=float(max(f.timestamp for f in frames)))
                    conn.execute("DELETE FROM hashes WHERE ref_pk=? AND signal_type=?", (pk, VPDQ))
                    conn.executemany(
                        "INSERT INTO hashes (ref_pk, signal_type, value, quality, timestamp, frame_number)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(pk, VPDQ, f.hex, f.quality, f.timestamp, f.frame_number) for f in frames],
                    )
                    self._bump_generation()
            except sqlite3.Error as e:
                raise _db_write_error(self.path, f"vPDQ of {rid}", e) from e
            self._snapshot = None
        return len(frames)

    @_reads
    def vpdq_of(self, ref_id: str) -> list:
        """The stored vPDQ frames of one reference (empty if it has none)."""
        from vmatch.signals.vpdq import VPDQFrame

        rows = self._conn.execute(
            "SELECT h.frame_number, h.value, h.quality, h.timestamp FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
            " WHERE r.ref_id=? AND h.signal_type=? ORDER BY h.rowid",
            (ref_id, VPDQ),
        )
        return [VPDQFrame(frame_number=a, hex=b, quality=c, timestamp=d) for a, b, c, d in rows]

    def match_vpdq(self, query: list, *, query_match_threshold: float = 80.0,
                   compared_match_threshold: float = 0.0) -> list[tuple[str, object]]:
        """References whose vPDQ matches ``query`` by the standard rule: candidates from a FAISS
        binary range search (Hamming <= 31), then python-threatexchange's percentages on each.

        Returns ``[(ref_id, VPDQMatch)]`` of the matches, best query-match first.
        """
        from vmatch.signals.vpdq import (
            VPDQ_DISTANCE_THRESHOLD,
            VPDQ_QUALITY_THRESHOLD,
            is_match,
            match_vpdq,
            pack_frames,
            range_search_hamming,
        )

        table = self.snapshot().vpdq
        good = [f for f in query if f.quality >= VPDQ_QUALITY_THRESHOLD]
        if table is None or not good:
            return []
        hits = range_search_hamming(table.index, pack_frames(good), radius=VPDQ_DISTANCE_THRESHOLD)
        cands = np.unique(table.ref_of_row[np.asarray(hits.ids, dtype=np.int64)]) if len(hits.ids) else []
        out = []
        for c in cands:
            rid = table.ref_ids[int(c)]
            m = match_vpdq(query, table.frames[rid])
            if is_match(m, query_match_threshold=query_match_threshold,
                        compared_match_threshold=compared_match_threshold):
                out.append((rid, m))
        out.sort(key=lambda x: (-x[1].query_match_percent, x[0]))
        return out

    def match_pdq(self, frames: list, *, radius: int = 31, min_quality: int = 50) -> list[tuple[str, int, float]]:
        """References holding an image PDQ within ``radius`` bits of one of the query's frames
        (:class:`~vmatch.signals.vpdq.VPDQFrame`, quality >= ``min_quality``), by a FAISS binary
        range search. Returns ``[(ref_id, best distance, query time of that frame)]``, closest first."""
        from vmatch.signals.vpdq import pack_frames, range_search_hamming

        table = self.snapshot().pdq
        good = [f for f in frames if f.quality >= min_quality]
        if table is None or not good:
            return []
        ref_of_row, index = table
        hits = range_search_hamming(index, pack_frames(good), radius=radius)
        best: dict[str, tuple[int, float]] = {}
        for qi in range(len(good)):
            for row, dist in zip(hits.ids[hits.lims[qi] : hits.lims[qi + 1]],
                                 hits.distances[hits.lims[qi] : hits.lims[qi + 1]]):
                ref = ref_of_row[int(row)]
                if ref not in best or int(dist) < best[ref][0]:
                    best[ref] = (int(dist), float(good[qi].timestamp))
        return sorted(((r, d, t) for r, (d, t) in best.items()), key=lambda x: (x[1], x[0]))

    @_reads
    def lookup_hash(self, signal_type: str, value: str) -> list[str]:
        """Ids of the references that carry this exact hash (e.g. ``("md5", "d41d8c...")``)."""
        (t, v), = _check_hashes({signal_type: value})
        rows = self._conn.execute(
            "SELECT DISTINCT r.ref_id FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
            " WHERE h.signal_type=? AND h.value=? ORDER BY r.ref_id",
            (t, v),
        )
        return [r[0] for r in rows]

    @_reads
    def has_hashes(self, signal_types: tuple[str, ...] = EXACT_SIGNAL_TYPES) -> bool:
        """Whether the bank holds any hash of these types (so that matching computes the query's)."""
        marks = ",".join("?" * len(signal_types))
        sql = f"SELECT 1 FROM hashes WHERE signal_type IN ({marks}) LIMIT 1"
        return self._conn.execute(sql, signal_types).fetchone() is not None

    @_reads
    def hashes(self, signal_type: str | None = None) -> list[tuple[str, str, str]]:
        """Every stored hash as ``(ref_id, signal_type, value)``, ordered (for export)."""
        sql = "SELECT r.ref_id, h.signal_type, h.value FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
        args: tuple = (VPDQ,)
        sql += " WHERE h.signal_type != ?"  # vPDQ frames are exported per reference, as files
        if signal_type is not None:
            sql += " AND h.signal_type=?"
            args = (VPDQ, signal_type)
        return [tuple(r) for r in self._conn.execute(sql + " ORDER BY h.signal_type, r.ref_id, h.value", args)]

    def remove(self, ref_ids: list[str] | tuple[str, ...] | str) -> list[str]:
        """Remove references by id; returns the ids that were present (and are now gone)."""
        if isinstance(ref_ids, str):
            ref_ids = [ref_ids]
        with self._lock:
            self._acquire_writer()
            removed: list[str] = []
            try:
                with _txn(self._conn, immediate=True):
                    for rid in ref_ids:
                        cur = self._conn.execute("DELETE FROM refs WHERE ref_id = ?", (rid,))
                        if cur.rowcount:
                            removed.append(rid)
                    if removed:
                        self._bump_generation()
            except sqlite3.Error as e:
                raise _db_write_error(self.path, ",".join(ref_ids), e) from e
            if removed:
                self._dirty = True
                self._snapshot = None
        return removed

    # ------------------------------------------------------------------ reads
    @_reads
    def list(self) -> list[ReferenceInfo]:
        """Every reference, ordered by id (each row checked: a damaged one is a BankError)."""
        rows = self._conn.execute(f"SELECT {_INFO_COLUMNS} FROM refs ORDER BY ref_id").fetchall()
        return [_ref_info(self.path / DB_NAME, self.spec.dim, r) for r in rows]

    @_reads
    def get(self, ref_id: str) -> ReferenceInfo | None:
        r = self._conn.execute(f"SELECT {_INFO_COLUMNS} FROM refs WHERE ref_id=?", (ref_id,)).fetchone()
        return None if r is None else _ref_info(self.path / DB_NAME, self.spec.dim, r)

    @_reads
    def verify(self) -> None:
        """Check the whole bank cheaply (no blob is read): the meta counters, and every
        reference's sizes and frame-id range. A writer calls this before it adds anything, so
        that a damaged bank is refused (BankError) instead of being written into."""
        db, dim = self.path / DB_NAME, self.spec.dim
        with self._lock, _txn(self._conn):
            self._meta_int("generation")
            next_fid = self._meta_int("next_fid")
            rows = self._conn.execute(f"SELECT ref_id, duration, n_frames, first_fid, {_BLOB_SIZES} FROM refs")
            for rid, duration, n_frames, first_fid, ts_bytes, feat_bytes in rows:
                _check_ref_row(db, dim, rid, duration, n_frames, ts_bytes, feat_bytes)
                if not isinstance(first_fid, int) or first_fid < 0 or first_fid + n_frames > next_fid:
                    raise _damaged(db, f"reference {rid!r:.80} has frame ids from {first_fid!r:.40}, beyond "
                                       f"the bank's next frame id {next_fid}")

    @_reads
    def find_by_sha256(self, sha256: str) -> list[str]:
        """Ids of the references whose source file had this content hash."""
        return [r[0] for r in self._conn.execute("SELECT ref_id FROM refs WHERE sha256=?", (sha256,))]

    @_reads
    def reference_embedding(self, ref_id: str) -> VideoEmbedding:
        """The stored embedding of one reference."""
        r = self._conn.execute(
            "SELECT duration, sha256, n_frames, timestamps, features FROM refs WHERE ref_id=?", (ref_id,)
        ).fetchone()
        if r is None:
            raise KeyError(ref_id)
        db, dim = self.path / DB_NAME, self.spec.dim
        duration, sha256, n_frames, ts, feats = r
        sizes = [len(b) if isinstance(b, bytes) else None for b in (ts, feats)]
        _check_ref_row(db, dim, ref_id, duration, n_frames, *sizes)
        return VideoEmbedding(
            video_id=ref_id,
            timestamps=_timestamps(db, ref_id, ts),
            features=np.frombuffer(feats, dtype="<f4").reshape(n_frames, dim),
            duration=float(duration),
            model_id=self.model_id,
            sha256=sha256,
            local=self.reference_local(ref_id, n_frames=int(n_frames)),
        )

    @_reads
    def frame_table(self) -> tuple[int, list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
        """The frame layout of one generation without loading any vector: ``(generation,
        ref_ids, first frame ids, frame counts, timestamps per reference)``, references with
        frames only, ordered by first frame id (as in the FAISS index). For searching with an
        index other than the bank's own (:mod:`vmatch.shards`)."""
        with self._lock, _txn(self._conn):
            gen = self._meta_int("generation")
            rows = self._frame_rows()
        return (
            gen,
            [r.ref_id for r in rows],
            np.array([r.first_fid for r in rows], dtype=np.int64),
            np.array([r.n_frames for r in rows], dtype=np.int64),
            [r.timestamps for r in rows],
        )

    def _frame_rows(self) -> list["_FrameRow"]:
        """The references that have frames, ordered by first frame id (as in the FAISS index),
        each checked; call inside a read transaction."""
        db, dim = self.path / DB_NAME, self.spec.dim
        rows = self._conn.execute(
            f"SELECT pk, ref_id, first_fid, n_frames, duration, timestamps, {_BLOB_SIZES} FROM refs"
            " WHERE n_frames > 0 ORDER BY first_fid"
        ).fetchall()
        out = []
        for pk, rid, first_fid, n_frames, duration, ts, ts_bytes, feat_bytes in rows:
            _check_ref_row(db, dim, rid, duration, n_frames, ts_bytes, feat_bytes)
            if not isinstance(first_fid, int) or first_fid < 0:
                raise _damaged(db, f"reference {rid!r:.80} has first frame id {first_fid!r:.40}")
            out.append(_FrameRow(pk, rid, first_fid, n_frames, float(duration), _timestamps(db, rid, ts)))
        return out

    @_reads
    def info(self) -> dict:
        """Summary of the bank: counts, model, generation, sizes on disk."""
        snap = self.snapshot()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        created = self._conn.execute("SELECT value FROM meta WHERE key='created_at'").fetchone()
        created = created[0] if created is not None else None
        return {
            "path": str(self.path),
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "model": json.loads(self._spec_json),
            "references": len(snap.ref_ids),
            "frames": int(snap.n_frames.sum()) if len(snap.ref_ids) else 0,
            "seconds": float(snap.durations.sum()) if len(snap.ref_ids) else 0.0,
            "generation": snap.generation,
            "index_type": type(snap.index).__name__,
            "hashes": dict(self._conn.execute("SELECT signal_type, count(*) FROM hashes GROUP BY signal_type")),
            "vpdq_references": len(snap.vpdq.ref_ids) if snap.vpdq is not None else 0,
            "hash_only_references": self._conn.execute("SELECT count(*) FROM refs WHERE n_frames = 0").fetchone()[0],
            "bytes_on_disk": size,
            "created_at": created,
        }

    # ------------------------------------------------------------------ the FAISS index
    def _index_files(self) -> list[tuple[int, Path]]:
        out = []
        for f in self.path.iterdir():
            m = _INDEX_RE.match(f.name)
            if m:
                out.append((int(m.group(1)), f))
        return sorted(out)

    @_reads
    def snapshot(self) -> _Snapshot:
        """The in-memory, consistent view of the current generation (loaded on demand)."""
        with self._lock:
            gen = self.generation
            if self._snapshot is not None and self._snapshot.generation == gen:
                return self._snapshot
            self._snapshot = self._load_snapshot()
            return self._snapshot

    def _load_snapshot(self) -> _Snapshot:
        conn = self._conn
        with _txn(conn):  # one read transaction: one generation
            gen = self._meta_int("generation")
            rows = self._frame_rows()  # hash-only references (no frames) are not in the FAISS index
            index = self._verified_index_file(gen)
            self._reconcile(index, rows)
            vp = conn.execute(
                "SELECT r.ref_id, h.value, h.quality, h.timestamp, h.frame_number FROM hashes h"
                " JOIN refs r ON r.pk = h.ref_pk WHERE h.signal_type = ? ORDER BY r.ref_id, h.rowid",
                (VPDQ,),
            ).fetchall()
            pdq_rows = conn.execute(
                "SELECT r.ref_id, h.value FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
                " WHERE h.signal_type = ? ORDER BY h.rowid",
                (PDQ,),
            ).fetchall()
        snap = _Snapshot(
            gen, self.spec.dim, [r.ref_id for r in rows],
            np.array([r.first_fid for r in rows], dtype=np.int64), np.array([r.n_frames for r in rows], dtype=np.int64),
            [r.timestamps for r in rows], np.array([r.duration for r in rows], dtype=np.float64), index,
        )
        if self._search_gpu is not None:
            from vmatch.ann import GpuFlatSearcher

            snap.searcher = GpuFlatSearcher(index, self._search_gpu)
        snap.vpdq = _VPDQTable.build(vp)
        if pdq_rows:
            from vmatch.signals.vpdq import build_binary_index

            packed = np.frombuffer(b"".join(bytes.fromhex(h) for _, h in pdq_rows), np.uint8).reshape(-1, 32)
            snap.pdq = ([r for r, _ in pdq_rows], build_binary_index(packed))
        return snap

    def _verified_index_file(self, gen: int):
        """The FAISS index saved last, read from its file only when the file is exactly the one
        the database recorded (its SHA-256); else a new empty index, which :meth:`_reconcile`
        fills from the database. The file is a cache: a damaged or foreign one is never trusted
        (its vectors would silently lose matches, and the next save would copy them on)."""
        import faiss

        empty = faiss.IndexIDMap2(faiss.IndexFlatIP(self.spec.dim))
        record = self._index_record()
        if record is None and self._index_files() and "legacy" not in self._warned:
            self._warned.add("legacy")  # saved by a vmatch that recorded no checksum: rebuilt until the next save
            log.info("%s: the FAISS file has no recorded checksum; the index is rebuilt from the database "
                     "(the next write records one)", self.path)
        if record is None or record.generation > gen:
            return empty
        f = self.path / f"index.{record.generation}.faiss"
        try:
            digest = _sha256_file(f)
        except FileNotFoundError:  # not saved yet, or replaced by a newer save meanwhile
            return empty
        except OSError as e:
            self._warn_once(f, f"{f}: cannot read ({e.strerror or e}); rebuilding the index from the database")
            return empty
        if digest != record.sha256:
            self._warn_once(f, f"{f} does not match the database; rebuilding it from the database")
            self._dirty = self._dirty or self._lock_fd is not None  # a writer saves a correct one
            return empty
        try:
            index = faiss.read_index(str(f))
            if index.d != self.spec.dim or not isinstance(index, faiss.IndexIDMap2):
                raise ValueError(f"unexpected index type {type(index).__name__} / dim {index.d}")
        except Exception as e:  # noqa: BLE001 - the file matched its record, yet FAISS refuses it
            self._warn_once(f, f"{f}: cannot read ({e}); rebuilding the index from the database")
            return empty
        return index

    def _reconcile(self, index, rows: list[_FrameRow]) -> None:
        """Bring ``index`` to the frames of ``rows``: remove the frames of references deleted
        since it was saved, add those of references added since (read from the database)."""
        import faiss

        dim = self.spec.dim
        first = np.array([r.first_fid for r in rows], dtype=np.int64)
        present = faiss.vector_to_array(index.id_map).astype(np.int64) if index.ntotal else np.zeros(0, np.int64)
        expected = (
            np.concatenate([np.arange(r.first_fid, r.first_fid + r.n_frames, dtype=np.int64) for r in rows])
            if rows
            else np.zeros(0, np.int64)
        )
        extra_ids = np.setdiff1d(present, expected, assume_unique=True)
        if extra_ids.size:
            index.remove_ids(extra_ids)
        missing = np.setdiff1d(expected, present, assume_unique=True)
        for i in np.unique(np.searchsorted(first, missing, side="right") - 1) if missing.size else ():
            row = rows[i]
            blob = self._conn.execute("SELECT features FROM refs WHERE pk=?", (row.pk,)).fetchone()[0]
            feats = np.frombuffer(blob, dtype="<f4").reshape(row.n_frames, dim)
            ids = np.arange(row.first_fid, row.first_fid + row.n_frames, dtype=np.int64)
            sel = np.isin(ids, missing)
            index.add_with_ids(np.ascontiguousarray(feats[sel]), ids[sel])

    def _index_record(self) -> "_IndexRecord | None":
        """The generation and SHA-256 of the FAISS file saved last, as the database recorded them."""
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (INDEX_RECORD_KEY,)).fetchone()
        if row is None:
            return None  # a bank saved by an older vmatch: its file is rebuilt once, then recorded
        try:
            d = json.loads(row[0])
            return _IndexRecord(int(d["generation"]), str(d["sha256"]))
        except (TypeError, ValueError, KeyError) as e:
            self._warn_once(INDEX_RECORD_KEY, f"{self.path / DB_NAME}: unreadable record of the FAISS file ({e}); "
                                              "rebuilding the index from the database")
            return None

    def _warn_once(self, key, message: str) -> None:
        """Log ``message`` as a warning the first time this handle meets ``key``."""
        if str(key) not in self._warned:
            self._warned.add(str(key))
            log.warning("%s", message)

    def save_index(self) -> Path | None:
        """Write the FAISS index of the current generation atomically (temp file, fsync, rename),
        and record its SHA-256 with its generation in the database, so that a reader can tell
        the file is exactly what this writer saved.

        Only the writer saves. Older index files are deleted afterwards.
        """
        import faiss

        with self._lock:
            self._acquire_writer()
            snap = self.snapshot()
            target = self.path / f"index.{snap.generation}.faiss"
            tmp = self.path / f".tmp-index.{os.getpid()}.{snap.generation}"
            try:
                faiss.write_index(snap.index, str(tmp))
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                record = json.dumps({"generation": snap.generation, "sha256": _sha256_file(tmp)})
                with _txn(self._conn, immediate=True):
                    self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                       (INDEX_RECORD_KEY, record))
                os.replace(tmp, target)
                _fsync_dir(self.path)
            except (OSError, RuntimeError, sqlite3.Error) as e:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                # The database stays the truth; readers rebuild from it. Not fatal.
                log.warning("%s: could not save the FAISS index (%s); it will be rebuilt on load", self.path, e)
                return None
            for g, f in self._index_files():
                if g != snap.generation:
                    with contextlib.suppress(OSError):
                        f.unlink()
            self._dirty = False
            return target

    def search(self, features: np.ndarray, k: int, *, snapshot: _Snapshot | None = None) -> FrameHits:
        """k-nearest reference frames of each query frame (inner product on L2-normalised rows).

        Pass the ``snapshot`` the caller already holds so that every step of one match sees the
        same generation, even while a writer changes the bank.
        """
        snap = snapshot if snapshot is not None else self.snapshot()
        q = np.ascontiguousarray(features, dtype=np.float32)
        nq = q.shape[0]
        if snap.index.ntotal == 0 or nq == 0:
            shape = (nq, 0)
            return FrameHits(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.float32))
        k = min(k, snap.index.ntotal)
        _use_blas_for_small_batches()
        sim, ids = snap.searcher.search(q, k)
        valid = ids >= 0
        ref_idx = np.searchsorted(snap.first_fids, np.where(valid, ids, 0), side="right") - 1
        frame_idx = np.where(valid, ids - snap.first_fids[np.maximum(ref_idx, 0)], -1)
        ref_idx = np.where(valid, ref_idx, -1)
        return FrameHits(ref_idx, frame_idx, sim)

    def local_features(self, ref_pos: int, *, snapshot: _Snapshot | None = None):
        """The stored keypoints (:class:`vmatch.verify.LocalFeatures`) of the reference at position
        ``ref_pos`` of the snapshot, or None for one indexed without them (re-index it)."""
        snap = snapshot if snapshot is not None else self.snapshot()
        rid = snap.ref_ids[ref_pos]
        cached = snap.local.get(rid)
        if cached is None:
            cached = self.reference_local(rid, n_frames=int(snap.n_frames[ref_pos]))
            if cached is not None and len(snap.local) < 4096:
                snap.local[rid] = cached
        return cached

    @_reads
    def reference_local(self, ref_id: str, *, n_frames: int | None = None):
        """The stored keypoints of reference ``ref_id`` (None: stored without them); ``n_frames``:
        how many frames they must describe (a mismatch is a BankError)."""
        from vmatch.verify import LocalFeatures

        row = self._conn.execute(
            "SELECT l.data FROM local_features l JOIN refs r ON r.pk = l.ref_pk WHERE r.ref_id = ?", (ref_id,)
        ).fetchone()
        if row is None:
            return None
        local = LocalFeatures.from_bytes(bytes(row[0]), source=f"{self.path / DB_NAME}: reference {ref_id!r}")
        if n_frames is not None and len(local) != n_frames:
            raise BankError(f"{self.path / DB_NAME}: reference {ref_id!r} has keypoints of {len(local)} frames for "
                            f"{n_frames} frames; index it again")
        return local

    def reference_vectors(self, ref_pos: int, *, snapshot: _Snapshot | None = None) -> np.ndarray:
        """[n, D] frame features of the reference at position ``ref_pos`` of the snapshot."""
        snap = snapshot if snapshot is not None else self.snapshot()
        a, n = int(snap.first_fids[ref_pos]), int(snap.n_frames[ref_pos])
        return snap.index.reconstruct_batch(np.arange(a, a + n, dtype=np.int64))

    # ------------------------------------------------------------------ embedding & matching
    def embedder(self):
        """The embedder of this bank's model (built on first use, on the bank's device)."""
        if self._embedder is None:
            from vmatch.embed import make_embedder

            self._embedder = make_embedder(self.spec, device=self._device)
        return self._embedder

    def set_embedder(self, embedder) -> None:
        """Use this embedder (its spec must be the bank's model) instead of building one."""
        if embedder.spec.model_id != self.model_id:
            raise ModelMismatchError(
                f"embedder model {embedder.spec.model_id} != bank model {self.model_id}"
            )
        self._embedder = embedder

    def match(self, item, *, fps: float = 1.0, params=None, min_score: float | None = None):
        """Match a query video (path) or :class:`VideoEmbedding` against this bank.

        Returns:
            A :class:`~vmatch.types.MatchReport` with matches sorted by score.
        """
        from vmatch.match import match_query

        return match_query(self, item, fps=fps, params=params, min_score=min_score)


def _check_hashes(hashes: dict[str, str]) -> list[tuple[str, str]]:
    """Validated ``(signal_type, canonical value)`` pairs of list hashes (md5, sha1, pdq)."""
    from vmatch.signals.exact import normalize_hex_digest

    out = []
    for t, v in hashes.items():
        if t == PDQ:
            out.append((t, normalize_pdq(v)))
        elif t in EXACT_SIGNAL_TYPES:
            out.append((t, normalize_hex_digest(v, t)))
        else:
            raise UsageError(f"unsupported hash signal type {t!r}; use one of {', '.join(LIST_SIGNAL_TYPES)}")
    return out


def normalize_pdq(value) -> str:
    """A PDQ hash as 64 lower-case hex digits (ThreatExchange form), else UsageError naming it."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(f"invalid PDQ value {value!r:.100}: expected exactly 64 hex digits (0-9, a-f)")
    return text


def _use_blas_for_small_batches() -> None:
    """Send flat searches of >= 20 query vectors through BLAS.

    faiss-cpu 1.15 only uses BLAS from 128,000 queries on (``distance_compute_blas_threshold``);
    a video query has tens to thousands of frames. Measured on the 2-core CI machine, 60 queries
    against 1e5 x 256-d: 0.21 s -> 0.03 s, same results. The setting is process-wide in FAISS.
    """
    import faiss

    if faiss.cvar.distance_compute_blas_threshold > 20:
        faiss.cvar.distance_compute_blas_threshold = 20


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
