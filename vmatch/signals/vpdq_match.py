"""vPDQ matching: python-threatexchange's brute-force rule, vectorised, and the FAISS binary index
helpers banks use to find candidate frames.

Where it sits: query :class:`~vmatch.signals.vpdq_frames.VPDQFrame` lists -> **match** ->
:class:`VPDQMatch` percentages and the :func:`is_match` decision; the rule is described in
:mod:`vmatch.signals.vpdq`, its numbers are in :mod:`vmatch.signals.rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vmatch.errors import UsageError
from vmatch.signals.rules import (
    HASH_BITS,
    VPDQ_DISTANCE_THRESHOLD,
    VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
    VPDQ_QUALITY_THRESHOLD,
    VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
)
from vmatch.signals.vpdq_frames import VPDQFrame, _check_frames, pack_frames

if TYPE_CHECKING:  # pragma: no cover
    import faiss

__all__ = ["HammingRange", "VPDQMatch", "build_binary_index", "is_match", "match_vpdq", "range_search_hamming"]

# Query rows compared at once in match_vpdq: bounds the [rows, N, 4] uint64 XOR buffer to ~32 MiB.
_MATCH_CHUNK_BYTES = 1 << 25


@dataclass(frozen=True)
class VPDQMatch:
    """Result of :func:`match_vpdq` (python-threatexchange's ``VPDQMatchResult`` plus the counts).

    Attributes:
        query_match_percent: 100 * ``n_query_matched`` / ``n_query`` (0.0 when ``n_query`` is 0).
        compared_match_percent: 100 * ``n_compared_matched`` / ``n_compared`` (0.0 when 0).
        n_query: query frames compared (distinct hashes of quality >= the threshold).
        n_compared: compared (reference) frames compared, likewise.
        n_query_matched: query frames with a compared frame within the distance.
        n_compared_matched: compared frames with a query frame within the distance.
    """

    query_match_percent: float
    compared_match_percent: float
    n_query: int = 0
    n_compared: int = 0
    n_query_matched: int = 0
    n_compared_matched: int = 0


def _filtered(frames: Sequence[VPDQFrame], quality_threshold: int) -> list[VPDQFrame]:
    """python-threatexchange's ``quality_filter(dedupe(frames), quality_threshold)``: first occurrence of
    each hash kept, then frames below the quality threshold dropped (in that order)."""
    seen: set[str] = set()
    unique: list[VPDQFrame] = []
    for f in frames:
        if f.hex not in seen:
            seen.add(f.hex)
            unique.append(f)
    return [f for f in unique if f.quality >= quality_threshold]


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """Number of set bits along the last axis of a uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].sum(axis=-1, dtype=np.int32)


def _match_flags(a: np.ndarray, b: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """For packed hashes ``a [N, 32]`` and ``b [M, 32]``: (rows of ``a`` with some row of ``b``
    within ``threshold`` bits, rows of ``b`` with some row of ``a`` within it)."""
    a64 = np.ascontiguousarray(a).view(np.uint64)
    b64 = np.ascontiguousarray(b).view(np.uint64)
    a_hit = np.zeros(len(a64), dtype=bool)
    b_hit = np.zeros(len(b64), dtype=bool)
    if len(a64) == 0 or len(b64) == 0:
        return a_hit, b_hit
    rows = max(1, _MATCH_CHUNK_BYTES // (len(b64) * 32))
    for start in range(0, len(a64), rows):
        block = a64[start : start + rows]
        close = _popcount_rows(block[:, None, :] ^ b64[None, :, :]) <= threshold
        a_hit[start : start + rows] = close.any(axis=1)
        b_hit |= close.any(axis=0)
    return a_hit, b_hit


def match_vpdq(
    query: Sequence[VPDQFrame],
    reference: Sequence[VPDQFrame],
    *,
    distance_threshold: int = VPDQ_DISTANCE_THRESHOLD,
    quality_threshold: int = VPDQ_QUALITY_THRESHOLD,
) -> VPDQMatch:
    """Compare two vPDQ hashes as python-threatexchange's ``match_VPDQ_hash_brute`` does.

    Each side is deduplicated (same hex string: first occurrence kept) and then stripped of frames
    whose quality is below ``quality_threshold``. A frame matches when the other side has a frame
    at Hamming distance ``<= distance_threshold``. ``query_match_percent`` is
    ``matched * 100 / len(filtered query)``, ``compared_match_percent`` the same for ``reference``.
    Where the reference would divide by zero (no frame left on a side) the percent is 0.0.

    Vectorised with numpy on packed hashes (64-bit XOR and popcount), in chunks of bounded memory.
    """
    query = _check_frames(query, "match_vpdq")
    reference = _check_frames(reference, "match_vpdq")
    if not isinstance(distance_threshold, (int, np.integer)) or isinstance(distance_threshold, bool):
        raise UsageError(f"match_vpdq: distance_threshold must be an integer, got {distance_threshold!r}")
    if not 0 <= distance_threshold <= HASH_BITS:
        raise UsageError(f"match_vpdq: distance_threshold must be in 0..256, got {distance_threshold}")
    if not isinstance(quality_threshold, (int, np.integer)) or isinstance(quality_threshold, bool):
        raise UsageError(f"match_vpdq: quality_threshold must be an integer, got {quality_threshold!r}")
    q = _filtered(query, int(quality_threshold))
    c = _filtered(reference, int(quality_threshold))
    q_hit, c_hit = _match_flags(pack_frames(q), pack_frames(c), int(distance_threshold))
    nq_m, nc_m = int(q_hit.sum()), int(c_hit.sum())
    return VPDQMatch(
        query_match_percent=nq_m * 100 / len(q) if q else 0.0,
        compared_match_percent=nc_m * 100 / len(c) if c else 0.0,
        n_query=len(q),
        n_compared=len(c),
        n_query_matched=nq_m,
        n_compared_matched=nc_m,
    )


def is_match(
    m: VPDQMatch,
    *,
    query_match_threshold: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
    compared_match_threshold: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
) -> bool:
    """``VPDQSignal.compare_hash``'s decision: ``query_match_percent >= query_match_threshold`` and
    ``compared_match_percent >= compared_match_threshold`` (defaults 80 and 0)."""
    if not isinstance(m, VPDQMatch):
        raise UsageError(f"is_match: expected a VPDQMatch, got {type(m).__name__}")
    return bool(
        m.query_match_percent >= float(query_match_threshold)
        and m.compared_match_percent >= float(compared_match_threshold)
    )


# --------------------------------------------------------------------------------------------------
# FAISS binary index
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HammingRange:
    """Result of :func:`range_search_hamming`, FAISS's range-search layout.

    The hits of query ``i`` are ``ids[lims[i]:lims[i + 1]]`` (row numbers in the index, in the order
    added) at Hamming distances ``distances[lims[i]:lims[i + 1]]``.

    Attributes:
        lims: ``int64 [Q + 1]``.
        distances: ``int32 [lims[-1]]``.
        ids: ``int64 [lims[-1]]``.
    """

    lims: np.ndarray
    distances: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(len(self.lims) - 1)

    def hits(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, distances)`` of query ``i``, sorted by distance then id."""
        if not 0 <= i < len(self):
            raise UsageError(f"HammingRange.hits: query {i} out of range 0..{len(self) - 1}")
        a, b = int(self.lims[i]), int(self.lims[i + 1])
        ids, dist = self.ids[a:b], self.distances[a:b]
        order = np.lexsort((ids, dist))
        return ids[order], dist[order]


def _check_packed(packed: Any, name: str) -> np.ndarray:
    arr = np.asarray(packed)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != HASH_BITS // 8:
        raise UsageError(
            f"{name}: expected packed hashes uint8 [N, {HASH_BITS // 8}] (pack_bits / pack_frames), "
            f"got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def build_binary_index(packed: Any) -> faiss.IndexBinaryFlat:
    """A FAISS exact binary index (``IndexBinaryFlat(256)``) holding packed hashes ``uint8 [N, 32]``.

    Row ``i`` of ``packed`` gets id ``i``. The packing is :func:`vmatch.signals.pdq.pack_bits`'s
    (= ``bytes.fromhex(hex)``), so FAISS's Hamming distances equal
    :func:`vmatch.signals.pdq.hamming` on the hex strings.
    """
    import faiss

    arr = _check_packed(packed, "build_binary_index")
    index = faiss.IndexBinaryFlat(HASH_BITS)
    if len(arr):
        index.add(arr)
    return index


def range_search_hamming(
    index: faiss.IndexBinary, queries_packed: Any, radius: int = VPDQ_DISTANCE_THRESHOLD
) -> HammingRange:
    """All indexed hashes within ``radius`` bits (inclusive, as the vPDQ rule) of each query.

    FAISS's binary range search keeps distances strictly below its radius; this passes
    ``radius + 1`` so that distance ``radius`` itself is found.
    """
    import faiss

    if not isinstance(index, faiss.IndexBinary):
        raise UsageError(f"range_search_hamming: expected a FAISS binary index, got {type(index).__name__}")
    if index.d != HASH_BITS:
        raise UsageError(f"range_search_hamming: the index holds {index.d}-bit codes, not {HASH_BITS}")
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or not 0 <= radius <= HASH_BITS:
        raise UsageError(f"range_search_hamming: radius must be an integer in 0..256, got {radius!r}")
    q = _check_packed(queries_packed, "range_search_hamming")
    if len(q) == 0 or index.ntotal == 0:
        return HammingRange(
            lims=np.zeros(len(q) + 1, dtype=np.int64),
            distances=np.zeros(0, dtype=np.int32),
            ids=np.zeros(0, dtype=np.int64),
        )
    lims, dist, ids = index.range_search(q, int(radius) + 1)
    return HammingRange(
        lims=np.asarray(lims, dtype=np.int64),
        distances=np.asarray(dist).astype(np.int32),
        ids=np.asarray(ids, dtype=np.int64),
    )
