"""Hash signals in the bank: the hash lists (exact MD5/SHA-1, image PDQ) and vPDQ frames of
references, their validation, their binary indexes and the PDQ / vPDQ match rules.

One ``hashes`` row per hash (vPDQ: one per sampled frame, with quality, timestamp and frame
number), deleted with its reference. The binary indexes are built per generation, with the
frame snapshot (:func:`read_signal_rows`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from vmatch.signals.registry import LIST_SIGNAL_TYPES, list_signal_type, PDQSignal, VPDQSignal

#: Image PDQ hashes (from shared lists): a video matches when one of its frames is within 31 bits.
PDQ = PDQSignal.name
#: vPDQ rows: one per sampled frame (value = PDQ hex, with quality, timestamp, frame number).
VPDQ = VPDQSignal.name
_INSERT = "INSERT INTO hashes (ref_pk, signal_type, value, quality, timestamp, frame_number) VALUES (?, ?, ?, ?, ?, ?)"
#: A PDQ hash as 64 lower-case hex digits (ThreatExchange form), else UsageError naming it.
normalize_pdq = PDQSignal.normalize


def _check_hashes(hashes: dict[str, str]) -> list[tuple[str, str]]:
    """Validated ``(signal_type, canonical value)`` pairs of list hashes (md5, sha1, pdq)."""
    return [(t, list_signal_type(t).normalize(v)) for t, v in hashes.items()]


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


@dataclass(frozen=True)
class PDQTable:
    """The bank's image PDQ hashes of one generation: the reference of each row, and a FAISS
    binary index over the hashes."""

    ref_of_row: list[str]
    index: object

    @classmethod
    def build(cls, rows) -> "PDQTable | None":
        if not rows:
            return None
        from vmatch.signals.vpdq import build_binary_index

        packed = np.frombuffer(b"".join(bytes.fromhex(h) for _, h in rows), np.uint8).reshape(-1, 32)
        return cls([r for r, _ in rows], build_binary_index(packed))


def read_signal_rows(conn: sqlite3.Connection) -> tuple[list, list]:
    """The vPDQ and image PDQ rows of the generation being read (call inside its transaction),
    for :meth:`_VPDQTable.build` and :meth:`PDQTable.build`."""
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
    return vp, pdq_rows


def hash_rows(hashes: dict[str, str] | None, vpdq: list | None) -> list[tuple]:
    """The ``hashes`` rows (without the reference) of a reference's list hashes and vPDQ frames."""
    rows = [(t, v, -1, 0.0, 0) for t, v in _check_hashes(hashes or {})]
    return rows + [(VPDQ, f.hex, f.quality, f.timestamp, f.frame_number) for f in (vpdq or [])]


def insert_hash_rows(conn: sqlite3.Connection, pk: int, rows: list[tuple]) -> None:
    """Store ``rows`` (from :func:`hash_rows`) for reference row ``pk`` (in the writer's transaction)."""
    conn.executemany(_INSERT, [(pk, *row) for row in rows])


def add_hash_once(conn: sqlite3.Connection, pk: int, signal_type: str, value: str) -> bool:
    """Store one list hash of reference row ``pk`` unless it is there already; whether it was new."""
    if conn.execute(
        "SELECT 1 FROM hashes WHERE ref_pk=? AND signal_type=? AND value=?", (pk, signal_type, value)
    ).fetchone() is not None:
        return False
    conn.execute("INSERT INTO hashes (ref_pk, signal_type, value) VALUES (?,?,?)", (pk, signal_type, value))
    return True


def replace_vpdq(conn: sqlite3.Connection, pk: int, frames: list) -> None:
    """Replace the vPDQ frames of reference row ``pk`` (in the writer's transaction)."""
    conn.execute("DELETE FROM hashes WHERE ref_pk=? AND signal_type=?", (pk, VPDQ))
    insert_hash_rows(conn, pk, hash_rows(None, frames))


def vpdq_of(conn: sqlite3.Connection, ref_id: str) -> list:
    """The stored vPDQ frames of one reference (empty if it has none)."""
    from vmatch.signals.vpdq import VPDQFrame

    rows = conn.execute(
        "SELECT h.frame_number, h.value, h.quality, h.timestamp FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
        " WHERE r.ref_id=? AND h.signal_type=? ORDER BY h.rowid",
        (ref_id, VPDQ),
    )
    return [VPDQFrame(frame_number=a, hex=b, quality=c, timestamp=d) for a, b, c, d in rows]


def lookup_hash(conn: sqlite3.Connection, signal_type: str, value: str) -> list[str]:
    """Ids of the references that carry this exact hash (e.g. ``("md5", "d41d8c...")``)."""
    (t, v), = _check_hashes({signal_type: value})
    rows = conn.execute(
        "SELECT DISTINCT r.ref_id FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
        " WHERE h.signal_type=? AND h.value=? ORDER BY r.ref_id",
        (t, v),
    )
    return [r[0] for r in rows]


def has_hashes(conn: sqlite3.Connection, signal_types: tuple[str, ...]) -> bool:
    """Whether the bank holds any hash of these types."""
    marks = ",".join("?" * len(signal_types))
    sql = f"SELECT 1 FROM hashes WHERE signal_type IN ({marks}) LIMIT 1"
    return conn.execute(sql, signal_types).fetchone() is not None


def exported_hashes(conn: sqlite3.Connection, signal_type: str | None = None) -> list[tuple[str, str, str]]:
    """Every stored list hash as ``(ref_id, signal_type, value)``, ordered (for export)."""
    sql = "SELECT r.ref_id, h.signal_type, h.value FROM hashes h JOIN refs r ON r.pk = h.ref_pk"
    args: tuple = (VPDQ,)
    sql += " WHERE h.signal_type != ?"  # vPDQ frames are exported per reference, as files
    if signal_type is not None:
        sql += " AND h.signal_type=?"
        args = (VPDQ, signal_type)
    return [tuple(r) for r in conn.execute(sql + " ORDER BY h.signal_type, r.ref_id, h.value", args)]


def match_vpdq(table: _VPDQTable | None, query: list, *, query_match_threshold: float,
               compared_match_threshold: float) -> list[tuple[str, object]]:
    """The references of ``table`` whose vPDQ matches ``query`` by the standard rule: candidates
    from a FAISS binary range search (Hamming <= 31), then python-threatexchange's percentages on
    each. Returns ``[(ref_id, VPDQMatch)]`` of the matches, best query-match first."""
    from vmatch.signals.vpdq import is_match, pack_frames
    from vmatch.signals.vpdq import match_vpdq as vpdq_match

    good = VPDQSignal.searchable(query)
    if table is None or not good:
        return []
    hits = VPDQSignal.search_index(table.index, pack_frames(good))
    cands = np.unique(table.ref_of_row[np.asarray(hits.ids, dtype=np.int64)]) if len(hits.ids) else []
    out = []
    for c in cands:
        rid = table.ref_ids[int(c)]
        m = vpdq_match(query, table.frames[rid])
        if is_match(m, query_match_threshold=query_match_threshold,
                    compared_match_threshold=compared_match_threshold):
            out.append((rid, m))
    out.sort(key=lambda x: (-x[1].query_match_percent, x[0]))
    return out


def match_pdq(table: PDQTable | None, frames: list, *, radius: int, min_quality: int) -> list[tuple[str, int, float]]:
    """The references of ``table`` holding an image PDQ within ``radius`` bits of one of the
    query's frames (quality >= ``min_quality``), by a FAISS binary range search. Returns
    ``[(ref_id, best distance, query time of that frame)]``, closest first."""
    from vmatch.signals.vpdq import pack_frames, range_search_hamming

    good = [f for f in frames if f.quality >= min_quality]
    if table is None or not good:
        return []
    hits = range_search_hamming(table.index, pack_frames(good), radius=radius)
    best: dict[str, tuple[int, float]] = {}
    for qi in range(len(good)):
        for row, dist in zip(hits.ids[hits.lims[qi] : hits.lims[qi + 1]],
                             hits.distances[hits.lims[qi] : hits.lims[qi + 1]]):
            ref = table.ref_of_row[int(row)]
            if ref not in best or int(dist) < best[ref][0]:
                best[ref] = (int(dist), float(good[qi].timestamp))
    return sorted(((r, d, t) for r, (d, t) in best.items()), key=lambda x: (x[1], x[0]))
