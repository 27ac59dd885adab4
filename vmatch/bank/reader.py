"""Reading one bank: its references, hash signals and the snapshot that frame search uses.

:class:`BankReader` holds a bank's open database (checked and migrated by
:func:`vmatch.bank.storage.check_bank`) and answers every read; :class:`vmatch.bank.Bank` adds
opening, the writer lock and writes. A read of the database that fails (damaged pages, a missing
table) is a :class:`BankError` naming the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np

from vmatch.bank import hashes as _hashes
from vmatch.bank.frame_index import FrameHits, FrameIndex, _Snapshot, search_index
from vmatch.bank.hashes import PDQTable, _VPDQTable
from vmatch.bank.references import _INFO_COLUMNS, _ref_info, check_all_rows, frame_rows, read_local, read_vectors
from vmatch.bank.storage import DB_NAME, FORMAT_VERSION, _reads, _txn, meta_int
from vmatch.errors import ModelMismatchError
from vmatch.signals.registry import EXACT_SIGNAL_TYPES, PDQSignal, VPDQSignal
from vmatch.types import ReferenceInfo, VideoEmbedding


class BankReader:
    """The reads of one open bank (see :class:`vmatch.bank.Bank`, which is one)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, spec_json: str, *, device: str,
                 search_gpu: int | None = None) -> None:
        self.path = path
        self._conn = conn
        self._spec_json = spec_json
        self._device = device
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._snapshot: _Snapshot | None = None
        self._embedder = None
        self._dirty = False
        self._closed = False
        self._frames = FrameIndex(path, conn, self.spec.dim, search_gpu=search_gpu)
        #: Whether this handle created the bank (so :meth:`discard_if_empty` may delete it again).
        self.created = False
        self._created_dir = False
        self._db_inode: int | None = None  # of the bank.sqlite this handle opened

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
    def _db(self) -> Path:
        return self.path / DB_NAME

    @property
    @_reads
    def generation(self) -> int:
        return self._meta_int("generation")

    def _meta_int(self, key: str) -> int:
        """A whole-number value of the meta table (see :func:`vmatch.bank.storage.meta_int`)."""
        return meta_int(self._conn, self._db, key)

    # ------------------------------------------------------------------ hash signals
    @_reads
    def vpdq_of(self, ref_id: str) -> list:
        """The stored vPDQ frames of one reference (empty if it has none)."""
        return _hashes.vpdq_of(self._conn, ref_id)

    def match_vpdq(self, query: list, *, query_match_threshold: float = VPDQSignal.QUERY_MATCH_THRESHOLD_PERCENT,
                   compared_match_threshold: float = VPDQSignal.INDEX_MATCH_THRESHOLD_PERCENT) -> list[tuple[str, object]]:
        """References whose vPDQ matches ``query`` by the standard rule: candidates from a FAISS
        binary range search (Hamming <= 31), then python-threatexchange's percentages on each.

        Returns ``[(ref_id, VPDQMatch)]`` of the matches, best query-match first.
        """
        return _hashes.match_vpdq(self.snapshot().vpdq, query, query_match_threshold=query_match_threshold,
                                  compared_match_threshold=compared_match_threshold)

    def match_pdq(self, frames: list, *, radius: int = PDQSignal.DISTANCE_THRESHOLD,
                  min_quality: int = PDQSignal.QUALITY_THRESHOLD) -> list[tuple[str, int, float]]:
        """References holding an image PDQ within ``radius`` bits of one of the query's frames
        (:class:`~vmatch.signals.vpdq.VPDQFrame`, quality >= ``min_quality``), by a FAISS binary
        range search. Returns ``[(ref_id, best distance, query time of that frame)]``, closest first."""
        return _hashes.match_pdq(self.snapshot().pdq, frames, radius=radius, min_quality=min_quality)

    @_reads
    def lookup_hash(self, signal_type: str, value: str) -> list[str]:
        """Ids of the references that carry this exact hash (e.g. ``("md5", "d41d8c...")``)."""
        return _hashes.lookup_hash(self._conn, signal_type, value)

    @_reads
    def has_hashes(self, signal_types: tuple[str, ...] = EXACT_SIGNAL_TYPES) -> bool:
        """Whether the bank holds any hash of these types (so that matching computes the query's)."""
        return _hashes.has_hashes(self._conn, signal_types)

    @_reads
    def hashes(self, signal_type: str | None = None) -> list[tuple[str, str, str]]:
        """Every stored hash as ``(ref_id, signal_type, value)``, ordered (for export)."""
        return _hashes.exported_hashes(self._conn, signal_type)

    # ------------------------------------------------------------------ reads
    @_reads
    def list(self) -> list[ReferenceInfo]:
        """Every reference, ordered by id (each row checked: a damaged one is a BankError)."""
        rows = self._conn.execute(f"SELECT {_INFO_COLUMNS} FROM refs ORDER BY ref_id").fetchall()
        return [_ref_info(self._db, self.spec.dim, r) for r in rows]

    @_reads
    def get(self, ref_id: str) -> ReferenceInfo | None:
        r = self._conn.execute(f"SELECT {_INFO_COLUMNS} FROM refs WHERE ref_id=?", (ref_id,)).fetchone()
        return None if r is None else _ref_info(self._db, self.spec.dim, r)

    @_reads
    def verify(self) -> None:
        """Check the whole bank cheaply (no blob is read): the meta counters, and every
        reference's sizes and frame-id range. A writer calls this before it adds anything, so
        that a damaged bank is refused (BankError) instead of being written into."""
        with self._lock, _txn(self._conn):
            check_all_rows(self._conn, self._db, self.spec.dim)

    @_reads
    def find_by_sha256(self, sha256: str) -> list[str]:
        """Ids of the references whose source file had this content hash."""
        return [r[0] for r in self._conn.execute("SELECT ref_id FROM refs WHERE sha256=?", (sha256,))]

    @_reads
    def reference_embedding(self, ref_id: str) -> VideoEmbedding:
        """The stored embedding of one reference."""
        duration, sha256, n_frames, ts, feats = read_vectors(self._conn, self._db, self.spec.dim, ref_id)
        return VideoEmbedding(video_id=ref_id, timestamps=ts, features=feats, duration=float(duration),
                              model_id=self.model_id, sha256=sha256,
                              local=self.reference_local(ref_id, n_frames=int(n_frames)))

    @_reads
    def reference_local(self, ref_id: str, *, n_frames: int | None = None):
        """The stored keypoints of reference ``ref_id`` (None: stored without them); ``n_frames``:
        how many frames they must describe (a mismatch is a BankError)."""
        return read_local(self._conn, self._db, ref_id, n_frames=n_frames)

    @_reads
    def frame_table(self) -> tuple[int, list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
        """The frame layout of one generation without loading any vector: ``(generation,
        ref_ids, first frame ids, frame counts, timestamps per reference)``, references with
        frames only, ordered by first frame id (as in the FAISS index). For searching with an
        index other than the bank's own (:mod:`vmatch.shards`)."""
        with self._lock, _txn(self._conn):
            gen = self._meta_int("generation")
            rows = frame_rows(self._conn, self._db, self.spec.dim)
        return (gen, [r.ref_id for r in rows], np.array([r.first_fid for r in rows], dtype=np.int64),
                np.array([r.n_frames for r in rows], dtype=np.int64), [r.timestamps for r in rows])

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

    # ------------------------------------------------------------------ the frame index
    def _index_files(self) -> list[tuple[int, Path]]:
        return self._frames.files()

    def readiness(self) -> dict:
        """The database's generation, that of the in-memory snapshot (None: not loaded yet) and
        of the newest FAISS file (None: none yet), and whether the snapshot is current."""
        gen = self.generation
        snap = self._snapshot
        files = self._index_files()
        return {"generation": gen, "snapshot_generation": snap.generation if snap is not None else None,
                "index_file_generation": files[-1][0] if files else None,
                "fresh": snap is not None and snap.generation == gen}

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
        with _txn(self._conn):  # one read transaction: one generation
            gen = self._meta_int("generation")
            rows = frame_rows(self._conn, self._db, self.spec.dim)  # hash-only references are not in FAISS
            index, mismatch = self._frames.load(gen, rows)
            self._dirty = self._dirty or (mismatch and self._lock_fd is not None)  # a writer saves a correct one
            vp, pdq_rows = _hashes.read_signal_rows(self._conn)
        snap = self._frames.snapshot(gen, rows, index)
        snap.vpdq = _VPDQTable.build(vp)
        snap.pdq = PDQTable.build(pdq_rows)
        return snap

    def save_index(self) -> Path | None:
        """Write the FAISS index of the current generation atomically (temp file, fsync, rename),
        and record its SHA-256 with its generation in the database, so that a reader can tell
        the file is exactly what this writer saved.

        Only the writer saves. Older index files are deleted afterwards.
        """
        with self._lock:
            self._acquire_writer()
            target = self._frames.save(self.snapshot())
            if target is not None:
                self._dirty = False
            return target

    def search(self, features: np.ndarray, k: int, *, snapshot: _Snapshot | None = None) -> FrameHits:
        """k-nearest reference frames of each query frame (inner product on L2-normalised rows).

        Pass the ``snapshot`` the caller already holds so that every step of one match sees the
        same generation, even while a writer changes the bank.
        """
        snap = snapshot if snapshot is not None else self.snapshot()
        return search_index(snap.index, snap.first_fids, features, k, searcher=snap.searcher)

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

    def reference_vectors(self, ref_pos: int, *, snapshot: _Snapshot | None = None) -> np.ndarray:
        """[n, D] frame features of the reference at position ``ref_pos`` of the snapshot."""
        snap = snapshot if snapshot is not None else self.snapshot()
        a, n = int(snap.first_fids[ref_pos]), int(snap.n_frames[ref_pos])
        return snap.index.reconstruct_batch(np.arange(a, a + n, dtype=np.int64))

    def set_embedder(self, embedder) -> None:
        """Use this embedder (its spec must be the bank's model) instead of building one."""
        if embedder.spec.model_id != self.model_id:
            raise ModelMismatchError(
                f"embedder model {embedder.spec.model_id} != bank model {self.model_id}"
            )
        self._embedder = embedder
