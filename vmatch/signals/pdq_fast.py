"""The fast PDQ path (``exact=False``, the default on CPU): luma, Jarosz filter and decimation as
two matrix products, then a float64 DCT (see "Fast path" in :mod:`vmatch.signals.pdq`).

Where it sits: below :func:`vmatch.signals.pdq.pdq_hash_batch`; its matrices are built by running
the exact path's scan (:mod:`vmatch.signals.pdq_exact`) on the identity, so the shrinking windows at
both ends are the reference's.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from vmatch.signals.pdq_exact import (
    _JAROSZ_PASSES,
    _SIDE,
    _bits_of_dct,
    _decimation_indices,
    _dct_matrix,
    _quality,
    _window_size,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Fast path on CPU: image rows converted to float32 and multiplied at a time (about 4 MB at 720p).
_FAST_BLOCK_ROWS = 256


@functools.lru_cache(maxsize=32)
def _filter_matrix(dim: int) -> np.ndarray:
    """float64 ``[64, dim]``: the rows ``decimateFloat`` keeps of the two box filters along an axis.

    ``box1DFloat`` maps ``x`` to ``y[i]``, the mean of ``x[lo(i) .. hi(i)]``, a window that shrinks
    at both ends (see :func:`_box_scan`); the filter is that matrix ``B`` squared (two passes; the row
    and column filters commute), restricted to the sampled rows. For ``dim = 64`` (window 1, every
    row kept) it is the identity, so 64x64 images, which the reference's plain hash does not filter,
    need no special case here.
    """
    window = _window_size(dim)
    half = (window + 2) // 2
    # As _box_scan computes it, y[i] sums x[lo(i) .. hi(i)] (checked against the scan in the tests).
    idx = np.arange(dim)
    lo = np.maximum(0, idx + half - window)
    hi = np.minimum(dim - 1, idx + half - 1)
    keep = np.asarray(_decimation_indices(dim))
    # Rows ``keep`` of B^2 = B[keep] @ B, with B's band applied through prefix sums (no dim x dim matrix):
    # (v @ B)[j] = sum over the i whose window holds j (a contiguous run, lo and hi being monotone) of
    # v[i] / count(i).
    mat = _box_rows(keep, lo, hi, dim)  # B[keep]: [64, dim]
    for _ in range(_JAROSZ_PASSES - 1):
        scaled = mat / (hi - lo + 1)[None, :]
        prefix = np.concatenate([np.zeros((mat.shape[0], 1)), np.cumsum(scaled, axis=1)], axis=1)
        # i ranges over [first_i(j), last_i(j)] with hi(i) >= j and lo(i) <= j.
        first_i = np.searchsorted(hi, idx, side="left")
        last_i = np.searchsorted(lo, idx, side="right") - 1
        mat = prefix[:, last_i + 1] - prefix[:, first_i]
    return np.ascontiguousarray(mat)


def _box_rows(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, dim: int) -> np.ndarray:
    """Rows ``rows`` of the box filter's matrix (float64 ``[len(rows), dim]``)."""
    cols = np.arange(dim)[None, :]
    r_lo, r_hi = lo[rows][:, None], hi[rows][:, None]
    return ((cols >= r_lo) & (cols <= r_hi)) / (r_hi - r_lo + 1.0)


@functools.lru_cache(maxsize=32)
def _fast_matrices(height: int, width: int) -> tuple[Any, Any]:
    """(``rows`` float32 ``[64, H]``, ``cols`` float32 ``[3 W, 64]``) of the fast path.

    ``cols`` folds the luma weights into the column filter: row ``3 x + c`` is the column filter's
    column ``x`` times ``weight[c] / 1000``, so ``rgb.reshape(H, 3 W) @ cols`` is luma filtered along
    the rows and decimated to 64 columns.
    """
    import torch

    rows = _filter_matrix(height)
    cols = _filter_matrix(width)
    weights = np.array([299.0, 587.0, 114.0]) / 1000.0
    cols3 = (cols.T[:, None, :] * weights[None, :, None]).reshape(3 * width, _SIDE)
    return (
        torch.from_numpy(rows.astype(np.float32)),
        torch.from_numpy(np.ascontiguousarray(cols3.astype(np.float32))),
    )


def _hash_rgb_fast(rgb: Any, dev: torch.device, *, dihedral: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path on a chunk of uint8 ``[n, H, W, 3]`` (numpy or torch): same outputs as
    :func:`_hash_luma`."""
    import torch

    if isinstance(rgb, np.ndarray):
        rgb = torch.from_numpy(np.ascontiguousarray(rgb))
    rgb = rgb.to(dev)
    n, height, width = (int(s) for s in rgb.shape[:3])
    rows, cols3 = _fast_matrices(height, width)
    rows, cols3 = rows.to(dev), cols3.to(dev)
    x = rgb.reshape(n * height, 3 * width)
    if dev.type == "cpu":
        # Convert to float32 a block of rows at a time into one reused buffer that stays in cache
        # (converting the whole chunk into fresh memory costs ~3x more, mostly page faults), and
        # multiply each block as it comes.
        part = torch.empty(n * height, _SIDE, dtype=torch.float32)
        buf = torch.empty(min(_FAST_BLOCK_ROWS, n * height), 3 * width, dtype=torch.float32)
        for start in range(0, n * height, _FAST_BLOCK_ROWS):
            stop = min(start + _FAST_BLOCK_ROWS, n * height)
            block = buf[: stop - start]
            block.copy_(x[start:stop])
            torch.mm(block, cols3, out=part[start:stop])
    else:
        part = x.to(torch.float32) @ cols3
    part = part.view(n, height, _SIDE)  # luma filtered along rows, decimated to 64 columns
    small = torch.matmul(rows, part)  # [n, 64, 64]
    quality = _quality(small)
    d = _dct_matrix(dev).to(torch.float64)
    dct = d @ small.to(torch.float64) @ d.T  # [n, 16, 16], float64 products (no need to replay)
    return _bits_of_dct(dct, dihedral=dihedral), quality
