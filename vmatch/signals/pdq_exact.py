"""The bit-exact PDQ core: the reference's float32 arithmetic replayed step by step in torch.

Where it sits: below :func:`vmatch.signals.pdq.pdq_hash_batch` (``exact=True``, the default on
CUDA); the steps (luma, Jarosz box filters, decimation to 64x64, quality, the 16x16 DCT, median
threshold, dihedral variants) and why each is exact are described in :mod:`vmatch.signals.pdq`.
The fast path (:mod:`vmatch.signals.pdq_fast`) reuses the quality, DCT matrix and thresholding here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vmatch.signals.rules import HASH_BITS

if TYPE_CHECKING:  # pragma: no cover
    import torch

_SIDE = 64  # the reference's downsampled size
_DCT_SIZE = 16  # frequencies 1..16 along each axis
_JAROSZ_PASSES = 2  # PDQ_NUM_JAROSZ_XY_PASSES


def _hash_luma(luma: torch.Tensor, *, dihedral: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 luma ``[H, W, n]`` (H, W >= 5) -> (bool bits ``[n, V, 256]`` in pdqhash order, int32
    quality ``[n]``)."""
    height, width = int(luma.shape[0]), int(luma.shape[1])
    if height == _SIDE and width == _SIDE and not dihedral:
        small = luma  # pdqFloat256FromFloatLuma hashes 64x64 input as is (the dihedral path does not)
    else:
        small = _jarosz_decimate(luma)
    small = small.permute(2, 0, 1).contiguous()  # [n, 64, 64]
    quality = _quality(small)
    dct = _dct16(small)  # [n, 16, 16]
    return _bits_of_dct(dct, dihedral=dihedral), quality


def _bits_of_dct(dct: torch.Tensor, *, dihedral: bool) -> torch.Tensor:
    """Hash bits of 16x16 DCT blocks ``[n, 16, 16]``: bool ``[n, V, 256]`` in pdqhash order, with
    ``V = 8`` dihedral variants (:func:`_dihedral_variants`) or 1; each block thresholded at its median."""
    import torch

    n = int(dct.shape[0])
    if dihedral:
        dct = _dihedral_variants(dct)  # [n, 8, 16, 16]
    else:
        dct = dct[:, None]
    flat = dct.reshape(n, dct.shape[1], HASH_BITS)
    # torben() returns the 128th smallest of the 256 values (an element of the set).
    median = torch.sort(flat, dim=-1).values[..., HASH_BITS // 2 - 1 : HASH_BITS // 2]
    return (flat > median).flip(-1)  # bit k = 16 i + j of Hash256 goes to position 255 - k


def _luma_hwn(rgb: torch.Tensor) -> torch.Tensor:
    """float32 luma of uint8 ``[n, H, W, 3]``, laid out ``[H, W, n]`` (frames innermost).

    The pdqhash binding computes ``float32(R*0.299 + G*0.587 + B*0.114)`` in float64. That equals the
    correctly rounded float32 of ``(299 R + 587 G + 114 B) / 1000`` for every one of the 2^24 RGB
    triples (checked exhaustively: the float64 error, below 1e-13, is far smaller than the distance,
    at least 7e-9, from such a fraction to a float32 rounding boundary), which is what an IEEE float32
    division of the exact integer (below 2^24, so exact in float32 whatever the summation order)
    by 1000 returns. So the luma is computed in float32, exactly, and without float64 (slow on most
    GPUs).
    """
    import torch

    weights = torch.tensor([299.0, 587.0, 114.0], dtype=torch.float32, device=rgb.device)
    thousand = torch.tensor(1000.0, dtype=torch.float32, device=rgb.device)  # a true division on CUDA too
    xf = rgb.permute(1, 2, 0, 3).to(torch.float32, memory_format=torch.contiguous_format)  # [H, W, n, 3]
    xf.mul_(weights)
    total = xf[..., 0] + xf[..., 1]
    total += xf[..., 2]
    return total.div_(thousand)


def _luma_hwn_numpy(rgb: np.ndarray) -> torch.Tensor:
    """:func:`_luma_hwn` with numpy for CPU work (same float32 operations, so the same values)."""
    import torch

    total = rgb[..., 0].astype(np.float32)
    total *= np.float32(299.0)
    total += rgb[..., 1] * np.float32(587.0)  # uint8 * float32 scalar -> float32, exact integers
    total += rgb[..., 2] * np.float32(114.0)
    total /= np.float32(1000.0)
    return torch.from_numpy(total).permute(1, 2, 0).contiguous()


def _window_size(dim: int) -> int:
    """``computeJaroszFilterWindowSize(dim, 64)``."""
    return (dim + 2 * _SIDE - 1) // (2 * _SIDE)


def _decimation_indices(dim: int) -> list[int]:
    """``decimateFloat`` sample positions: ``(int)(((i + 0.5) * dim) / 64)`` in double precision."""
    return [int(((i + 0.5) * dim) / _SIDE) for i in range(_SIDE)]


def _box_scan(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """``box1DFloat`` along axis ``dim`` of a float32 tensor, for all the other positions at once.

    A sequential loop over the positions along ``dim`` (each step a vector operation over the slice
    orthogonal to it), replaying the reference's float32 running sum: add the entering sample,
    subtract the leaving one, then divide by the current window length (a true division by a device
    tensor, as CUDA turns a division by a Python scalar into a multiplication by its reciprocal).
    """
    import torch

    length = int(x.shape[dim])
    half = (window + 2) // 2
    out = torch.empty_like(x)
    xs = x.unbind(dim)
    outs = out.unbind(dim)
    counts: list[int] = []

    # Phase 1: accumulate the first half - 1 samples, no output.
    ri = 0
    acc = torch.zeros_like(xs[0])
    for _ in range(half - 1):
        acc.add_(xs[ri])
        ri += 1
    prev = acc
    oi = 0
    # Phase 2: growing window, adds only.
    for _ in range(window - half + 1):
        torch.add(prev, xs[ri], out=outs[oi])
        prev = outs[oi]
        counts.append(half + oi)
        ri += 1
        oi += 1
    # Phase 3: full window, add then subtract.
    li = 0
    for _ in range(length - window):
        cur = outs[oi]
        torch.add(prev, xs[ri], out=cur)
        cur.sub_(xs[li])
        prev = cur
        counts.append(window)
        ri += 1
        li += 1
        oi += 1
    # Phase 4: shrinking window, subtracts only.
    for step in range(half - 1):
        torch.sub(prev, xs[li], out=outs[oi])
        prev = outs[oi]
        counts.append(window - 1 - step)
        li += 1
        oi += 1
    shape = [1] * x.dim()
    shape[dim] = length
    divisor = torch.tensor(counts, dtype=torch.float32, device=x.device).view(shape)
    return out.div_(divisor)


def _jarosz_decimate(luma: torch.Tensor) -> torch.Tensor:
    """``jaroszFilterFloat`` (2 rounds of rows-then-columns box filters) + ``decimateFloat`` to 64x64.

    Works on ``[H, W, n]`` (frames innermost): every scan step then reads and writes runs of ``n``
    contiguous values whichever axis is filtered, and no transpose is needed. The last column pass
    runs only on the 64 columns that the decimation keeps (columns are filtered independently, so
    this changes nothing but the work). Returns ``[64, 64, n]``.
    """
    height, width = int(luma.shape[0]), int(luma.shape[1])
    w_rows = _window_size(width)  # window of the box filter along each row (across columns)
    w_cols = _window_size(height)
    keep_rows = _decimation_indices(height)
    keep_cols = _decimation_indices(width)
    cur = luma
    for rnd in range(_JAROSZ_PASSES):
        cur = _box_scan(cur, w_rows, dim=1)
        if rnd == _JAROSZ_PASSES - 1:
            cur = cur[:, keep_cols]  # [H, 64, n]
        cur = _box_scan(cur, w_cols, dim=0)
    return cur[keep_rows]  # [64, 64, n]


def _quality(small: torch.Tensor) -> torch.Tensor:
    """``pdqImageDomainQualityMetric`` of float32 ``[n, 64, 64]``: int32 ``[n]`` in 0..100."""
    import torch

    c255 = torch.tensor(255.0, dtype=torch.float32, device=small.device)
    total = torch.zeros(small.shape[0], dtype=torch.int64, device=small.device)
    for diff in (small[:, :-1, :] - small[:, 1:, :], small[:, :, :-1] - small[:, :, 1:]):
        d = torch.div(diff * 100.0, c255).trunc().to(torch.int64)  # int d = ((u - v) * 100) / 255
        total += d.abs().sum(dim=(1, 2))
    return torch.clamp(torch.div(total, 90, rounding_mode="floor"), max=100).to(torch.int32)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The reference's float32 ``[16, 64]`` DCT matrix (``dct_matrix_64``), built in double with libm cos."""
    import torch

    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    rows = [
        [scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1)) for j in range(_SIDE)]
        for i in range(_DCT_SIZE)
    ]
    return torch.tensor(np.asarray(rows, dtype=np.float64).astype(np.float32), device=device)


def _dct16(a: torch.Tensor) -> torch.Tensor:
    """``dct64To16``: ``B = D A D^T`` for float32 ``[n, 64, 64]`` -> ``[n, 16, 16]``.

    Each dot product is accumulated over k = 0..63 in order with float32 roundings after every product
    and every sum, as the reference's scalar loops do (a BLAS matmul would block and fuse them).
    """
    d = _dct_matrix(a.device)  # [16, 64]
    # T[n, i, j] = sum_k D[i, k] A[n, k, j]
    t = d[:, 0, None] * a[:, None, 0, :]  # [n, 16, 64]
    for k in range(1, _SIDE):
        t.add_(d[:, k, None] * a[:, None, k, :])
    # B[n, i, j] = sum_k T[n, i, k] D[j, k]
    b = t[:, :, 0, None] * d[None, None, :, 0]  # [n, 16, 16]
    for k in range(1, _SIDE):
        b.add_(t[:, :, k, None] * d[None, None, :, k])
    return b


def _dihedral_variants(b: torch.Tensor) -> torch.Tensor:
    """DCTs of the 8 dihedral transforms of the image (``dct16OriginalTo*``), ``[n, 16, 16]`` to
    ``[n, 8, 16, 16]`` in :data:`DIHEDRAL_NAMES` order."""
    import torch

    odd = torch.tensor([-1.0, 1.0] * (_DCT_SIZE // 2), dtype=b.dtype, device=b.device)  # +1 at odd index
    row_sign = odd.view(_DCT_SIZE, 1)  # by frequency row i
    col_sign = odd.view(1, _DCT_SIZE)  # by frequency column j
    checker = row_sign * col_sign  # -1 where i + j is odd
    tr = lambda m: m.transpose(-1, -2)  # noqa: E731
    return torch.stack(
        [
            b,  # original
            tr(b * col_sign),  # rotate 90:  B[j][i] = A[i][j] * (j odd ? 1 : -1)
            b * checker,  # rotate 180: sign flip where i + j is odd
            tr(b * row_sign),  # rotate 270: B[j][i] = A[i][j] * (i odd ? 1 : -1)
            b * row_sign,  # flip X: sign flip of even i
            b * col_sign,  # flip Y: sign flip of even j
            tr(b),  # transpose (FlipPlus1)
            tr(b * checker),  # transverse (FlipMinus1)
        ],
        dim=1,
    )
