"""The bank: reference frame embeddings in FAISS plus their metadata in SQLite.

Where it sits: embed -> **bank** (add / remove / search) -> align.

:class:`Bank` is the facade of one bank directory; its pieces, one concept each:

* :mod:`vmatch.bank.storage`: the SQLite database (schema, versioned migrations, transactions,
  damage and corruption errors); :mod:`vmatch.bank.files`: the directory's files (creating a
  new bank atomically, removing an empty one);
* :mod:`vmatch.bank.lock`: the writer lock (one writer, any number of readers);
* :mod:`vmatch.bank.references`: reference ids and rows;
* :mod:`vmatch.bank.frame_index`: the FAISS cache, the snapshot of a generation, frame search;
* :mod:`vmatch.bank.hashes`: hash lists, vPDQ and their match rules;
* :mod:`vmatch.bank.protocol`: what matching needs of a bank (also met by
  :class:`vmatch.shards.ShardedBank`), and the ``add(path)`` / ``match(path)`` facade.

Privacy. Only embeddings and metadata are stored: never frames, never media.

No pickle anywhere: SQLite rows, little-endian numpy buffers and FAISS's own format.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from pathlib import Path
from typing import Callable

from vmatch.bank import hashes as _hashes
from vmatch.bank.files import (
    _bank_owned,
    _create_database,
    _inode,
    _prepare_new_bank_dir,
    _remove_bank_files,
    _sha256_file,
)
from vmatch.bank.frame_index import INDEX_RECORD_KEY, FrameHits, _use_blas_for_small_batches
from vmatch.bank.hashes import LIST_SIGNAL_TYPES, PDQ, VPDQ, _check_hashes, normalize_pdq
from vmatch.bank.lock import LOCK_NAME, BankBusyError, WriterLockHolder, acquire_writer_lock, release_writer_lock
from vmatch.bank.protocol import MatchableBank, PipelineFacade, SearchSnapshot
from vmatch.bank.reader import BankReader
from vmatch.bank.references import MAX_REF_ID_BYTES, insert_reference, ref_pk_for_hashes, validate_ref_id
from vmatch.bank.storage import (
    DB_NAME,
    FORMAT_VERSION,
    SCHEMA_VERSION,
    _corrupted,
    _db_write_error,
    _now,
    _txn,
    bump_generation,
    check_bank,
)
from vmatch.errors import BankError, BankNotFoundError, ModelMismatchError, UsageError
from vmatch.types import ReferenceInfo, VideoEmbedding

#: The names other modules, tests and scripts import from ``vmatch.bank`` (some private ones
#: among them, from before the bank was a package).
__all__ = [
    "DB_NAME", "FORMAT_VERSION", "INDEX_RECORD_KEY", "LIST_SIGNAL_TYPES", "LOCK_NAME", "MAX_REF_ID_BYTES", "PDQ",
    "SCHEMA_VERSION", "VPDQ", "WRITER_WAIT_S", "Bank", "BankBusyError", "BankReader", "FrameHits", "MatchableBank",
    "SearchSnapshot", "WriterLockHolder", "normalize_pdq", "validate_ref_id", "_bank_owned",
    "_prepare_new_bank_dir", "_sha256_file", "_use_blas_for_small_batches",
]

#: Seconds a write waits for the writer lock when the handle did not take it with
#: :meth:`Bank.lock_for_writing` (the API and the HTTP service, whose requests must not hang).
WRITER_WAIT_S = 30.0


class Bank(BankReader, PipelineFacade):
    """A bank of reference videos. Open with :meth:`Bank.open` (or :meth:`Bank.create`).

    Example:
        >>> bank = Bank.open("index", create=True, model="effnet-lite0-gem")   # doctest: +SKIP
        >>> bank.add("known/clip.mp4")                                          # doctest: +SKIP
        >>> report = bank.match("upload.mp4")                                   # doctest: +SKIP
        >>> [(m.reference, m.score) for m in report.matches]                    # doctest: +SKIP
    """

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike, *, model=None, device: str = "auto") -> "Bank":
        """Create a new empty bank at ``path`` for ``model`` (a ModelSpec or registry name)."""
        p = Path(path)
        if (p / DB_NAME).exists():
            raise BankError(f"{p}: a bank already exists here; open it with Bank.open")
        return cls.open(p, create=True, model=model, device=device)

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, model=None, device: str = "auto",
             search_device: str = "cpu") -> "Bank":
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
            bank = cls(p, conn, check_bank(conn, p, model), device=device, search_gpu=search_gpu)
            bank._db_inode = _inode(db)
        except BaseException:
            conn.close()
            raise
        bank.created, bank._created_dir = created, created_dir
        return bank

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
        """Hold the writer lock from now until close; wait up to ``timeout`` seconds for it (None:
        :data:`WRITER_WAIT_S`; ``math.inf``: without limit). The first write of a handle that did
        not call :meth:`lock_for_writing` takes it here."""
        if self._lock_fd is not None:
            return
        self._lock_fd = acquire_writer_lock(self.path, timeout=WRITER_WAIT_S if timeout is None else timeout,
                                            still_current=self._db_is_current, on_wait=on_wait)
        for f in self.path.glob(".tmp-index.*"):
            with contextlib.suppress(OSError):
                f.unlink()

    def _db_is_current(self) -> bool:
        """Whether ``bank.sqlite`` is still the file this handle opened (not deleted, or replaced,
        by a run that discarded the bank meanwhile: writes to it would be lost)."""
        try:
            return self._db_inode is None or os.stat(self._db).st_ino == self._db_inode
        except OSError:
            return False

    def _release_writer(self) -> None:
        if self._lock_fd is not None:
            try:
                release_writer_lock(self._lock_fd)
            finally:
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

    @contextlib.contextmanager
    def _write(self, what: str, *, changes_frames: bool = False):
        """One write: the writer lock, one immediate transaction (a failed write is a BankError
        about ``what``: nothing was written for it), then the snapshot is stale."""
        with self._lock:
            self._acquire_writer()
            try:
                with _txn(self._conn, immediate=True):
                    yield self._conn
            except sqlite3.Error as e:
                raise _db_write_error(self.path, what, e) from e
            if changes_frames:
                self._dirty = True
            self._snapshot = None

    # ------------------------------------------------------------------ writes
    def add_embedding(self, emb: VideoEmbedding, *, ref_id: str | None = None, source_name: str = "",
                      extra: dict | None = None, hashes: dict[str, str] | None = None,
                      vpdq: list | None = None) -> ReferenceInfo:
        """Store one :class:`VideoEmbedding` as a reference (replacing one of the same id).

        ``hashes``: exact hashes of the source file, e.g. ``{"md5": ..., "sha1": ...}``; ``vpdq``:
        its vPDQ frames (:class:`vmatch.signals.vpdq.VPDQFrame`); stored in the same transaction.
        """
        hash_rows = _hashes.hash_rows(hashes, vpdq)
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
        local = None
        if emb.local is not None:  # keypoints as stored: static flags set, the kept ones chosen (once)
            from vmatch.verify import prepare_reference

            prepared = emb.local if emb.local.reference else prepare_reference(emb.local, emb.timestamps)
            local = prepared.to_bytes()
        added = _now()
        with self._write(rid, changes_frames=True) as conn:
            pk = insert_reference(conn, self._db, rid, emb, source_name=source_name, added=added, extra=extra,
                                  local=local)
            _hashes.insert_hash_rows(conn, pk, hash_rows)
            bump_generation(conn, self._db)
        return ReferenceInfo(reference=rid, duration=float(emb.duration), n_frames=len(emb), sha256=emb.sha256,
                             added_at=added, source_name=source_name, extra=dict(extra or {}))

    def add_hashes(self, items: list[tuple[str, str, str]]) -> int:
        """Import hashes without media: ``(ref_id, signal_type, value)`` triples, in one transaction.

        A reference that does not exist yet is created without frames (a *hash-only* reference:
        found by its hashes, never by the CNN). Hashes already stored are not duplicated.

        Returns:
            The number of hashes newly stored.
        """
        checked = [(validate_ref_id(r), *_check_hashes({t: v})[0]) for r, t, v in items]
        added = 0
        with self._write(f"{len(items)} imported hashes") as conn:
            for rid, t, v in checked:
                pk = ref_pk_for_hashes(conn, self._db, self.spec.dim, rid, duration=0.0)
                added += _hashes.add_hash_once(conn, pk, t, v)
            bump_generation(conn, self._db)
        return added

    def add_vpdq(self, ref_id: str, frames: list) -> int:
        """Import a vPDQ hash (list of :class:`~vmatch.signals.vpdq.VPDQFrame`) for ``ref_id``,
        replacing its previous vPDQ; creates a hash-only reference if needed. Returns the frame count."""
        rid = validate_ref_id(ref_id)
        if not frames:
            raise UsageError(f"{rid}: empty vPDQ hash; nothing to import")
        with self._write(f"vPDQ of {rid}") as conn:
            duration = float(max(f.timestamp for f in frames))
            _hashes.replace_vpdq(conn, ref_pk_for_hashes(conn, self._db, self.spec.dim, rid, duration=duration), frames)
            bump_generation(conn, self._db)
        return len(frames)

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
                        bump_generation(self._conn, self._db)
            except sqlite3.Error as e:
                raise _db_write_error(self.path, ",".join(ref_ids), e) from e
            if removed:
                self._dirty = True
                self._snapshot = None
        return removed
