"""The frame index of a bank: the FAISS cache of every reference frame, the in-memory snapshot
of one generation, frame search (CPU or GPU).

The FAISS file ``index.<G>.faiss`` is a cache of the database: written to a temporary name,
fsynced, recorded (generation and SHA-256) in the database and renamed; a reader uses it only if
it is that file, and brings its in-memory copy up to date from the database (adding the missing
frames, removing the deleted ones) without writing anything. So an interrupted ``index`` leaves
the bank as it was after the last complete file, never half-written, always loadable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmatch.bank.files import _fsync_dir, _sha256_file
from vmatch.bank.references import _FrameRow
from vmatch.bank.storage import _INDEX_RE, DB_NAME, _txn

log = logging.getLogger("vmatch.bank")

#: Meta key of the record of the FAISS file saved last (JSON: generation, sha256).
INDEX_RECORD_KEY = "index_file"


@dataclass(frozen=True)
class FrameHits:
    """Result of a frame-level search: for each query frame, the k best reference frames.

    ``ref_index`` [Nq, k] indexes :attr:`BankSnapshot.ref_ids` (-1 where no hit), ``frame_index``
    [Nq, k] the frame inside that reference, ``similarity`` [Nq, k] the raw inner product.
    """

    ref_index: np.ndarray
    frame_index: np.ndarray
    similarity: np.ndarray



@dataclass(frozen=True)
class _IndexRecord:
    """What the database says of the FAISS file saved last: its generation and SHA-256."""

    generation: int
    sha256: str



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
        self.vpdq = None  # vmatch.bank.hashes._VPDQTable of the vPDQ hashes, if any
        self.pdq = None  # (ref id per row, FAISS binary index) of image PDQ hashes, if any
        self.searcher = index  # what frame search uses: the index, or its GPU copy (ann.GpuFlatSearcher)
        self.local: dict = {}  # ref id -> vmatch.verify.LocalFeatures read so far (verification)


def empty_hits(nq: int) -> FrameHits:
    """The hits of ``nq`` query frames against an empty index."""
    shape = (nq, 0)
    return FrameHits(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.float32))


def hits_from_ids(first_fids: np.ndarray, sim: np.ndarray, ids: np.ndarray) -> FrameHits:
    """The :class:`FrameHits` of a FAISS search answer (frame ids ``ids`` [Nq, k]) over references
    whose frames start at ``first_fids`` (sorted)."""
    valid = ids >= 0
    ref_idx = np.searchsorted(first_fids, np.where(valid, ids, 0), side="right") - 1
    frame_idx = np.where(valid, ids - first_fids[np.maximum(ref_idx, 0)], -1)
    return FrameHits(np.where(valid, ref_idx, -1), frame_idx, sim)


def search_index(index, first_fids: np.ndarray, features: np.ndarray, k: int, *, searcher=None) -> FrameHits:
    """k-nearest frames of each query frame in ``index`` (searched with ``searcher``, e.g. its
    GPU copy, when given), as :class:`FrameHits` over references starting at ``first_fids``."""
    q = np.ascontiguousarray(features, dtype=np.float32)
    nq = q.shape[0]
    if index.ntotal == 0 or nq == 0:
        return empty_hits(nq)
    _use_blas_for_small_batches()
    sim, ids = (searcher if searcher is not None else index).search(q, min(k, index.ntotal))
    return hits_from_ids(first_fids, sim, ids)


def _use_blas_for_small_batches() -> None:
    """Send flat searches of >= 20 query vectors through BLAS.

    faiss-cpu 1.15 only uses BLAS from 128,000 queries on (``distance_compute_blas_threshold``);
    a video query has tens to thousands of frames. Measured on the 2-core CI machine, 60 queries
    against 1e5 x 256-d: 0.21 s -> 0.03 s, same results. The setting is process-wide in FAISS.
    """
    import faiss

    if faiss.cvar.distance_compute_blas_threshold > 20:
        faiss.cvar.distance_compute_blas_threshold = 20


class FrameIndex:
    """The FAISS cache of one bank directory: which file is trusted, bringing an index up to
    date from the database, saving it, and the snapshot of a generation built on it."""

    def __init__(self, path: Path, conn: sqlite3.Connection, dim: int, *, search_gpu: int | None = None) -> None:
        self.path = path
        self._conn = conn
        self.dim = dim
        self.search_gpu = search_gpu  # GPU number for frame search (faiss-gpu), None: CPU
        self._warned: set[str] = set()  # cache files already reported as not matching the database

    def files(self) -> list[tuple[int, Path]]:
        """The ``index.<G>.faiss`` files of the directory, by generation."""
        out = []
        for f in self.path.iterdir():
            m = _INDEX_RE.match(f.name)
            if m:
                out.append((int(m.group(1)), f))
        return sorted(out)

    def snapshot(self, gen: int, rows: list[_FrameRow], index) -> _Snapshot:
        """The snapshot of generation ``gen`` (references ``rows``, frames in ``index``), searched
        on the GPU when the bank was opened so."""
        snap = _Snapshot(
            gen, self.dim, [r.ref_id for r in rows],
            np.array([r.first_fid for r in rows], dtype=np.int64), np.array([r.n_frames for r in rows], dtype=np.int64),
            [r.timestamps for r in rows], np.array([r.duration for r in rows], dtype=np.float64), index,
        )
        if self.search_gpu is not None:
            from vmatch.ann import GpuFlatSearcher

            snap.searcher = GpuFlatSearcher(index, self.search_gpu)
        return snap

    def load(self, gen: int, rows: list[_FrameRow]) -> tuple[object, bool]:
        """The index of generation ``gen`` holding exactly the frames of ``rows``: the saved file
        when it is the one recorded, brought up to date from the database (call inside the read
        transaction of ``gen``). Also whether the file did not match its record (a writer then
        saves a correct one)."""
        index, mismatch = self._verified_index_file(gen)
        self._reconcile(index, rows)
        return index, mismatch

    def _verified_index_file(self, gen: int) -> tuple[object, bool]:
        """The FAISS index saved last, read from its file only when the file is exactly the one
        the database recorded (its SHA-256); else a new empty index, which :meth:`_reconcile`
        fills from the database. The file is a cache: a damaged or foreign one is never trusted
        (its vectors would silently lose matches, and the next save would copy them on)."""
        import faiss

        empty = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        record = self._record()
        if record is None and self.files() and "legacy" not in self._warned:
            self._warned.add("legacy")  # saved by a vmatch that recorded no checksum: rebuilt until the next save
            log.info("%s: the FAISS file has no recorded checksum; the index is rebuilt from the database "
                     "(the next write records one)", self.path)
        if record is None or record.generation > gen:
            return empty, False
        f = self.path / f"index.{record.generation}.faiss"
        try:
            digest = _sha256_file(f)
        except FileNotFoundError:  # not saved yet, or replaced by a newer save meanwhile
            return empty, False
        except OSError as e:
            self._warn_once(f, f"{f}: cannot read ({e.strerror or e}); rebuilding the index from the database")
            return empty, False
        if digest != record.sha256:
            self._warn_once(f, f"{f} does not match the database; rebuilding it from the database")
            return empty, True  # a writer saves a correct one
        try:
            index = faiss.read_index(str(f))
            if index.d != self.dim or not isinstance(index, faiss.IndexIDMap2):
                raise ValueError(f"unexpected index type {type(index).__name__} / dim {index.d}")
        except Exception as e:  # noqa: BLE001 - the file matched its record, yet FAISS refuses it
            self._warn_once(f, f"{f}: cannot read ({e}); rebuilding the index from the database")
            return empty, False
        return index, False

    def _reconcile(self, index, rows: list[_FrameRow]) -> None:
        """Bring ``index`` to the frames of ``rows``: remove the frames of references deleted
        since it was saved, add those of references added since (read from the database)."""
        import faiss

        dim = self.dim
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

    def _record(self) -> "_IndexRecord | None":
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

    def save(self, snap: _Snapshot) -> Path | None:
        """Write the FAISS index of snapshot ``snap`` atomically (temp file, fsync, rename), and
        record its SHA-256 with its generation in the database, so that a reader can tell the file
        is exactly what this writer saved; older index files are deleted afterwards. Call holding
        the writer lock. Returns the file, or None when it could not be written (logged: the
        database stays the truth, readers rebuild from it)."""
        import faiss

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
        for g, f in self.files():
            if g != snap.generation:
                with contextlib.suppress(OSError):
                    f.unlink()
        return target
