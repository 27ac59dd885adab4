"""References in the bank's database: id validation, the checked reading of their rows, and
the SQL that stores, finds and removes them (called inside the bank's transactions).

Rows are checked from their stored sizes alone (no blob is read for it): a damaged one is the
:class:`BankError` of a damaged bank naming the file and the reference.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmatch.bank.storage import _damaged, _now, meta_int
from vmatch.errors import BankError, UsageError
from vmatch.types import ReferenceInfo, VideoEmbedding

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
class _FrameRow:
    """One stored reference that has frames, as snapshots and frame tables read it (checked)."""

    pk: int
    ref_id: str
    first_fid: int
    n_frames: int
    duration: float
    timestamps: np.ndarray


def frame_rows(conn: sqlite3.Connection, db: Path, dim: int) -> list[_FrameRow]:
    """The references that have frames, ordered by first frame id (as in the FAISS index),
    each checked; call inside a read transaction."""
    rows = conn.execute(
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


def check_all_rows(conn: sqlite3.Connection, db: Path, dim: int) -> None:
    """Check the meta counters and every reference's sizes and frame-id range (no blob is read);
    call inside a read transaction."""
    meta_int(conn, db, "generation")
    next_fid = meta_int(conn, db, "next_fid")
    rows = conn.execute(f"SELECT ref_id, duration, n_frames, first_fid, {_BLOB_SIZES} FROM refs")
    for rid, duration, n_frames, first_fid, ts_bytes, feat_bytes in rows:
        _check_ref_row(db, dim, rid, duration, n_frames, ts_bytes, feat_bytes)
        if not isinstance(first_fid, int) or first_fid < 0 or first_fid + n_frames > next_fid:
            raise _damaged(db, f"reference {rid!r:.80} has frame ids from {first_fid!r:.40}, beyond "
                               f"the bank's next frame id {next_fid}")


def insert_reference(conn: sqlite3.Connection, db: Path, rid: str, emb: VideoEmbedding, *, source_name: str,
                     added: str, extra: dict | None, local: bytes | None) -> int:
    """Store ``emb`` as reference ``rid`` (replacing one of that id) with its keypoints
    (``local``), taking the next frame ids; returns its row. Call inside the writer's transaction."""
    feats = np.ascontiguousarray(emb.features, dtype="<f4")
    ts = np.ascontiguousarray(emb.timestamps, dtype="<f8")
    next_fid = meta_int(conn, db, "next_fid")
    conn.execute("DELETE FROM refs WHERE ref_id = ?", (rid,))
    conn.execute(
        "INSERT INTO refs (ref_id, duration, n_frames, sha256, source_name, added_at,"
        " first_fid, timestamps, features, extra) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (rid, float(emb.duration), len(emb), emb.sha256, source_name, added, next_fid, ts.tobytes(),
         feats.tobytes(), json.dumps(extra or {}, sort_keys=True)),
    )
    pk = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    if local is not None:
        conn.execute("INSERT INTO local_features (ref_pk, data) VALUES (?, ?)", (pk, local))
    conn.execute("UPDATE meta SET value = ? WHERE key='next_fid'", (str(next_fid + len(emb)),))
    return pk


def ref_pk_for_hashes(conn: sqlite3.Connection, db: Path, dim: int, rid: str, *, duration: float) -> int:
    """Row of reference ``rid``, created as a hash-only reference (no frames) if it does not
    exist. Call inside the writer's transaction."""
    row = conn.execute("SELECT pk FROM refs WHERE ref_id=?", (rid,)).fetchone()
    if row is not None:
        return int(row[0])
    next_fid = meta_int(conn, db, "next_fid")
    conn.execute(
        "INSERT INTO refs (ref_id, duration, n_frames, sha256, source_name, added_at,"
        " first_fid, timestamps, features, extra) VALUES (?,?,0,'','',?,?,?,?,?)",
        (rid, duration, _now(), next_fid, b"", np.zeros((0, dim), "<f4").tobytes(),
         json.dumps({"hash_only": True})),
    )
    return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])


def read_vectors(conn: sqlite3.Connection, db: Path, dim: int, ref_id: str):
    """``(duration, sha256, n_frames, timestamps, features)`` of one stored reference (checked);
    KeyError if there is none."""
    r = conn.execute(
        "SELECT duration, sha256, n_frames, timestamps, features FROM refs WHERE ref_id=?", (ref_id,)
    ).fetchone()
    if r is None:
        raise KeyError(ref_id)
    duration, sha256, n_frames, ts, feats = r
    sizes = [len(b) if isinstance(b, bytes) else None for b in (ts, feats)]
    _check_ref_row(db, dim, ref_id, duration, n_frames, *sizes)
    return (duration, sha256, n_frames, _timestamps(db, ref_id, ts),
            np.frombuffer(feats, dtype="<f4").reshape(n_frames, dim))


def read_local(conn: sqlite3.Connection, db: Path, ref_id: str, *, n_frames: int | None = None):
    """The stored keypoints of reference ``ref_id`` (None: stored without them); ``n_frames``:
    how many frames they must describe (a mismatch is a BankError)."""
    from vmatch.verify import LocalFeatures

    row = conn.execute(
        "SELECT l.data FROM local_features l JOIN refs r ON r.pk = l.ref_pk WHERE r.ref_id = ?", (ref_id,)
    ).fetchone()
    if row is None:
        return None
    local = LocalFeatures.from_bytes(bytes(row[0]), source=f"{db}: reference {ref_id!r}")
    if n_frames is not None and len(local) != n_frames:
        raise BankError(f"{db}: reference {ref_id!r} has keypoints of {len(local)} frames for "
                        f"{n_frames} frames; index it again")
    return local
