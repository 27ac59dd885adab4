"""The bank: reference frame embeddings in FAISS plus their metadata in SQLite.

Where it sits: embed -> **bank** (add / remove / search) -> align.

Layout of a bank directory::

    DIR/bank.sqlite        metadata, and the source of truth: one row per reference with its
                           id, duration, content hash, time added, frame timestamps and features
    DIR/index.<G>.faiss    FAISS index (IndexIDMap2 over inner product) of every reference frame,
                           as of generation G of the database (a cache: rebuilt if missing/stale)
    DIR/.writer.lock       held by the one process that writes

Atomicity. Each reference is added (or replaced, or removed) in one SQLite transaction (WAL
journal, ``synchronous=FULL``), which also bumps the bank's *generation*. A process killed at any
instant leaves the database at the last committed reference. The FAISS file is written to a
temporary name, fsynced and renamed, and named by the generation it reflects; a reader that finds
it older than the database brings its in-memory copy up to date from the database (adding the
missing frames, removing the deleted ones) without writing anything. So an interrupted ``index``
leaves the bank as it was after the last complete file, never half-written, always loadable.

Concurrency. One writer at a time (an exclusive ``flock`` on ``.writer.lock``); any number of
readers, each of which sees one consistent generation (a single read transaction), never half of
a change.

Privacy. Only embeddings and metadata are stored: never frames, never media.

No pickle anywhere: SQLite rows, little-endian numpy buffers and FAISS's own format.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vmatch.errors import BankError, BankNotFoundError, ModelMismatchError, UsageError
from vmatch.types import ReferenceInfo, VideoEmbedding

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DB_NAME = "bank.sqlite"
LOCK_NAME = ".writer.lock"
_INDEX_RE = re.compile(r"^index\.(\d+)\.faiss$")
_REF_ID_RE = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")

#: Industry hashes of a reference (exact file hashes now; one row per hash), deleted with it.
_HASHES_TABLE = """CREATE TABLE IF NOT EXISTS hashes (
    ref_pk INTEGER NOT NULL REFERENCES refs (pk) ON DELETE CASCADE,
    signal_type TEXT NOT NULL,
    value TEXT NOT NULL,
    quality INTEGER NOT NULL DEFAULT -1,
    timestamp REAL NOT NULL DEFAULT 0,
    frame_number INTEGER NOT NULL DEFAULT 0
)"""
EXACT_SIGNAL_TYPES = ("md5", "sha1")
#: Image PDQ hashes (from shared lists): a video matches when one of its frames is within 31 bits.
PDQ = "pdq"
#: Signal types of one-line-per-hash lists (`vmatch import` / `export`).
LIST_SIGNAL_TYPES = (*EXACT_SIGNAL_TYPES, PDQ)
#: vPDQ rows: one per sampled frame (value = PDQ hex, with quality, timestamp, frame number).
VPDQ = "vpdq"

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
    _HASHES_TABLE,
    "CREATE INDEX IF NOT EXISTS hashes_value ON hashes (signal_type, value)",
)


def validate_ref_id(ref_id: str) -> str:
    """Return ``ref_id`` if it is a usable reference id, else raise UsageError."""
    if not isinstance(ref_id, str) or not _REF_ID_RE.match(ref_id) or ref_id.strip() != ref_id:
        raise UsageError(
            f"invalid reference id {ref_id!r}: use 1-255 printable characters, no '/' or '\\', "
            "no leading/trailing spaces"
        )
    return ref_id


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


@dataclass(frozen=True)
class FrameHits:
    """Result of a frame-level search: for each query frame, the k best reference frames.

    ``ref_index`` [Nq, k] indexes :attr:`BankSnapshot.ref_ids` (-1 where no hit), ``frame_index``
    [Nq, k] the frame inside that reference, ``similarity`` [Nq, k] the raw inner product.
    """

    ref_index: np.ndarray
    frame_index: np.ndarray
    similarity: np.ndarray


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
            create: create an empty bank if none exists (the directory too).
            model: for a new bank, the model (ModelSpec or registry name; default model if None).
                For an existing bank, if given, it must be the bank's model, else
                :class:`ModelMismatchError`.
            device: where the bank's embedder runs when it embeds videos ("auto", "cpu", "cuda").
            search_device: where frame search runs: "cpu" (default, the FAISS index itself) or
                "cuda"/"cuda:N" (an exact copy on the GPU per snapshot; needs the ``gpu`` extra).

        Raises:
            BankNotFoundError: no bank at ``path`` and ``create`` is false.
            BankError: the bank is corrupted or unreadable (the message says which file).
            ModelMismatchError: ``model`` differs from the bank's model.
        """
        from vmatch.ann import check_search_device
        from vmatch.models import ModelSpec, get_model_spec

        search_gpu = check_search_device(search_device)
        p = Path(path)
        db = p / DB_NAME
        if not db.exists():
            if not create:
                raise BankNotFoundError(
                    f"{p}: no bank here ({DB_NAME} missing); create one with `vmatch index --bank {p} ...`"
                )
            if p.exists() and not p.is_dir():
                raise BankError(f"{p}: exists and is not a directory")
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BankError(f"{p}: cannot create bank directory: {e.strerror or e}") from e
        if isinstance(model, str):
            model = get_model_spec(model)
        try:
            conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None, check_same_thread=False)
            _set_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            new = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()[0] == 0
            if new:
                if not create:
                    raise BankError(f"{db}: not a vmatch bank (no meta table)")
                spec = model if model is not None else get_model_spec()
                with _txn(conn, immediate=True):  # one creator wins; the others see its bank
                    for stmt in _SCHEMA:  # (executescript would commit the open transaction)
                        conn.execute(stmt)
                    conn.executemany(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
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
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            conn.execute("SELECT pk FROM refs LIMIT 1").fetchall()  # the other table is there too
            if conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='hashes'"
            ).fetchone()[0] == 0:  # a bank made before hashes were stored: add the (empty) table
                with _txn(conn, immediate=True):
                    for stmt in _SCHEMA[-2:]:
                        conn.execute(stmt)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(hashes)")}
            if "frame_number" not in cols:  # a bank made before vPDQ was stored
                with _txn(conn, immediate=True):
                    for col in ("quality INTEGER NOT NULL DEFAULT -1", "timestamp REAL NOT NULL DEFAULT 0",
                                "frame_number INTEGER NOT NULL DEFAULT 0"):
                        if col.split()[0] not in cols:
                            conn.execute(f"ALTER TABLE hashes ADD COLUMN {col}")
        except sqlite3.DatabaseError as e:
            raise _corrupted(db, e) from e
        try:
            fv = int(meta["format_version"])
            spec_json = meta["model_spec"]
            stored = ModelSpec.from_dict(json.loads(spec_json))
        except (KeyError, ValueError, TypeError) as e:
            conn.close()
            raise BankError(f"{db}: bank metadata is corrupted ({e!r}); re-index into a new bank") from e
        if fv > FORMAT_VERSION:
            conn.close()
            raise BankError(
                f"{db}: bank format {fv} is newer than this vmatch understands ({FORMAT_VERSION}); "
                "upgrade vmatch"
            )
        if model is not None and model.model_id != stored.model_id:
            conn.close()
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
        return int(self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

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
    def _acquire_writer(self, timeout: float = 30.0) -> None:
        if self._lock_fd is not None:
            return
        lock_path = self.path / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise BankError(f"{lock_path}: cannot lock bank for writing: {e}") from e
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise BankError(
                        f"{self.path}: another process is writing to this bank; wait for it to finish"
                    ) from e
                time.sleep(0.1)
        self._lock_fd = fd
        self._cleanup_temp_files()

    def _release_writer(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _cleanup_temp_files(self) -> None:
        for f in self.path.glob(".tmp-index.*"):
            with contextlib.suppress(OSError):
                f.unlink()

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
            from vmatch.pipeline import add_video

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
        added = _now()
        with self._lock:
            self._acquire_writer()
            conn = self._conn
            try:
                with _txn(conn, immediate=True):
                    next_fid = int(conn.execute("SELECT value FROM meta WHERE key='next_fid'").fetchone()[0])
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
                    conn.executemany(
                        "INSERT INTO hashes (ref_pk, signal_type, value, quality, timestamp, frame_number)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(pk, *row) for row in hash_rows],
                    )
                    conn.execute(
                        "UPDATE meta SET value = ? WHERE key='next_fid'", (str(next_fid + len(emb)),)
                    )
                    conn.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'"
                    )
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
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
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
        next_fid = int(conn.execute("SELECT value FROM meta WHERE key='next_fid'").fetchone()[0])
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
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
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
                        self._conn.execute(
                            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'"
                        )
            except sqlite3.Error as e:
                raise _db_write_error(self.path, ",".join(ref_ids), e) from e
            if removed:
                self._dirty = True
                self._snapshot = None
        return removed

    # ------------------------------------------------------------------ reads
    @_reads
    def list(self) -> list[ReferenceInfo]:
        """Every reference, ordered by id."""
        rows = self._conn.execute(
            "SELECT ref_id, duration, n_frames, sha256, added_at, source_name, extra FROM refs ORDER BY ref_id"
        ).fetchall()
        return [
            ReferenceInfo(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows
        ]

    @_reads
    def get(self, ref_id: str) -> ReferenceInfo | None:
        r = self._conn.execute(
            "SELECT ref_id, duration, n_frames, sha256, added_at, source_name, extra FROM refs WHERE ref_id=?",
            (ref_id,),
        ).fetchone()
        return None if r is None else ReferenceInfo(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"))

    @_reads
    def find_by_sha256(self, sha256: str) -> list[str]:
        """Ids of the references whose source file had this content hash."""
        return [r[0] for r in self._conn.execute("SELECT ref_id FROM refs WHERE sha256=?", (sha256,))]

    @_reads
    def reference_embedding(self, ref_id: str) -> VideoEmbedding:
        """The stored embedding of one reference."""
        r = self._conn.execute(
            "SELECT duration, sha256, timestamps, features FROM refs WHERE ref_id=?", (ref_id,)
        ).fetchone()
        if r is None:
            raise KeyError(ref_id)
        return VideoEmbedding(
            video_id=ref_id,
            timestamps=np.frombuffer(r[2], dtype="<f8"),
            features=np.frombuffer(r[3], dtype="<f4").reshape(-1, self.spec.dim),
            duration=r[0],
            model_id=self.model_id,
            sha256=r[1],
        )

    @_reads
    def frame_table(self) -> tuple[int, list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
        """The frame layout of one generation without loading any vector: ``(generation,
        ref_ids, first frame ids, frame counts, timestamps per reference)``, references with
        frames only, ordered by first frame id (as in the FAISS index). For searching with an
        index other than the bank's own (:mod:`vmatch.shards`)."""
        with self._lock, _txn(self._conn):
            gen = int(self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            rows = self._conn.execute(
                "SELECT ref_id, first_fid, n_frames, timestamps FROM refs WHERE n_frames > 0 ORDER BY first_fid"
            ).fetchall()
        return (
            gen,
            [r[0] for r in rows],
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.int64),
            [np.frombuffer(r[3], dtype="<f8").astype(np.float64) for r in rows],
        )

    @_reads
    def info(self) -> dict:
        """Summary of the bank: counts, model, generation, sizes on disk."""
        snap = self.snapshot()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        created = self._conn.execute("SELECT value FROM meta WHERE key='created_at'").fetchone()[0]
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
        import faiss

        dim = self.spec.dim
        conn = self._conn
        with _txn(conn):  # one read transaction: one generation
            gen = int(conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            rows = conn.execute(  # hash-only references (no frames) are not in the FAISS index
                "SELECT pk, ref_id, first_fid, n_frames, duration, timestamps FROM refs"
                " WHERE n_frames > 0 ORDER BY first_fid"
            ).fetchall()
            ref_ids = [r[1] for r in rows]
            first = np.array([r[2] for r in rows], dtype=np.int64)
            nfr = np.array([r[3] for r in rows], dtype=np.int64)
            dur = np.array([r[4] for r in rows], dtype=np.float64)
            tss = [np.frombuffer(r[5], dtype="<f8").astype(np.float64) for r in rows]
            index = None
            for g, f in reversed(self._index_files()):
                if g > gen:
                    continue
                try:
                    index = faiss.read_index(str(f))
                    if index.d != dim or not isinstance(index, faiss.IndexIDMap2):
                        raise ValueError(f"unexpected index type {type(index).__name__} / dim {index.d}")
                    break
                except FileNotFoundError:
                    continue
                except Exception as e:  # a damaged cache file: rebuild from the database
                    log.warning("%s: cannot read (%s); rebuilding the index from the database", f, e)
                    index = None
                    break
            if index is None:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            present = faiss.vector_to_array(index.id_map).astype(np.int64) if index.ntotal else np.zeros(0, np.int64)
            expected = (
                np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in zip(first, nfr)])
                if len(rows)
                else np.zeros(0, np.int64)
            )
            extra_ids = np.setdiff1d(present, expected, assume_unique=True)
            if extra_ids.size:
                index.remove_ids(extra_ids)
            missing = np.setdiff1d(expected, present, assume_unique=True)
            if missing.size:
                miss_refs = np.unique(np.searchsorted(first, missing, side="right") - 1)
                for i in miss_refs:
                    pk = rows[i][0]
                    blob = conn.execute("SELECT features FROM refs WHERE pk=?", (pk,)).fetchone()[0]
                    feats = np.frombuffer(blob, dtype="<f4").reshape(-1, dim)
                    ids = np.arange(first[i], first[i] + nfr[i], dtype=np.int64)
                    sel = np.isin(ids, missing)
                    index.add_with_ids(np.ascontiguousarray(feats[sel]), ids[sel])
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
        snap = _Snapshot(gen, dim, ref_ids, first, nfr, tss, dur, index)
        if self._search_gpu is not None:
            from vmatch.ann import GpuFlatSearcher

            snap.searcher = GpuFlatSearcher(index, self._search_gpu)
        snap.vpdq = _VPDQTable.build(vp)
        if pdq_rows:
            from vmatch.signals.vpdq import build_binary_index

            packed = np.frombuffer(b"".join(bytes.fromhex(h) for _, h in pdq_rows), np.uint8).reshape(-1, 32)
            snap.pdq = ([r for r, _ in pdq_rows], build_binary_index(packed))
        return snap

    def save_index(self) -> Path | None:
        """Write the FAISS index of the current generation atomically (temp file, fsync, rename).

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
                os.replace(tmp, target)
                _fsync_dir(self.path)
            except (OSError, RuntimeError) as e:
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
        from vmatch.pipeline import match_query

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
