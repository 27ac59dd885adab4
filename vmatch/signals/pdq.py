"""PDQ perceptual hashes of RGB frames, batched in torch (CPU or CUDA), bit-compatible with Meta's reference.

PDQ is the 256-bit perceptual image hash of Meta's ThreatExchange (``pdq/cpp/hashing/pdqhashing.cpp``,
``pdq/cpp/downscaling/downscaling.cpp``), also published on PyPI as ``pdqhash``. This module computes it
for a whole batch of frames at once with torch tensor operations, on CPU or GPU, and replicates the
reference's float32 arithmetic step by step so that its hashes are the same bits as
``pdqhash.compute(rgb)`` on the same ``uint8`` RGB arrays (see "Exactness" below) with ``exact=True``
(the default on CUDA); on CPU the default is a fast path, several times faster, whose hashes are
identical on nearly all frames (see "Fast path").

This module is the batch driver (validation, grouping by size, chunking, the path chosen) and the
public names; the results and bit helpers are in :mod:`vmatch.signals.pdq_bits`, the bit-exact
core in :mod:`vmatch.signals.pdq_exact`, the fast path in :mod:`vmatch.signals.pdq_fast`.

The algorithm, as the reference implements it (``pdqHash256FromFloatLuma``):

1. Luminance ``Y = 0.299 R + 0.587 G + 0.114 B``. The ``pdqhash`` Python binding computes it with numpy
   in float64 (``R*0.299 + G*0.587 + B*0.114``, left to right) and rounds it to float32. This module gets
   the very same float32 values as ``float32(299 R + 587 G + 114 B) / 1000`` (exact integer, one IEEE
   float32 division; identical for all 2^24 RGB triples, see :func:`_luma_hwn`), which needs no float64.
   (The C++ command-line hasher computes luma in float32 instead; on the frames tried it gave the same
   hashes too.)
2. Images smaller than 5 pixels on a side get the all-zero hash and quality 0.
3. Unless the image is exactly 64x64 (which the reference hashes as is), a Jarosz filter: two rounds of a
   box filter along the rows then along the columns, with window ``(dim + 127) // 128`` (full size over
   64, halved, rounded up: ``computeJaroszFilterWindowSize``). The box filter (``box1DFloat``) is a float32
   running sum (add the entering sample, then subtract the leaving one) divided by the number of samples
   in the window, the window shrinking at both ends (it covers ``[i - (w+2)//2 + 1, i + w - (w+2)//2]``).
   Then decimation to 64x64 by sampling rows/columns ``int((i + 0.5) * dim / 64)`` (``decimateFloat``).
4. Quality: ``sum(|int((u - v) * 100 / 255)|)`` over the vertical and horizontal neighbour pairs of the
   64x64 image, integer-divided by 90, clipped to 100 (``pdqImageDomainQualityMetric``).
5. The 16x16 low-frequency block (DC skipped) of the 2-D DCT: ``B = D A D^T`` with
   ``D[i][j] = float(sqrt(2/64)) * cos(pi/128 * (i+1) * (2j+1))`` for ``i < 16``, ``j < 64``, each dot
   product accumulated in float32 in index order (``dct64To16``).
6. Bit ``k = 16 i + j`` of the hash is ``B[i][j] > median`` where the median is the 128th smallest of the
   256 values (``torben``: the lower median, an element of the set).
7. Dihedral variants (``pdqDihedralHash256esFromFloatLuma``): the DCT of a rotated/flipped image is the
   original one transposed and/or with the signs of odd/even frequency rows/columns flipped; each variant
   is re-thresholded at its own median. As in the reference, the dihedral path always runs the Jarosz
   filter, even on 64x64 images (with window 1 its running sum is not an exact identity in float32), so
   on 64x64 inputs its ``original`` hash can differ slightly from the plain hash, exactly as
   ``pdqhash.compute_dihedral`` differs from ``pdqhash.compute``.

Bit layout. ``bits[..., m]`` (``uint8`` 0/1, 256 per hash) is bit ``255 - m`` of the reference's
``Hash256`` (bit ``k`` lives in word ``k >> 4`` at position ``k & 15``), i.e. the order of the arrays
``pdqhash.compute`` returns and the binary expansion, most significant bit first, of the ThreatExchange
hex form (``Hash256::format``: the 16 words from ``w[15]`` to ``w[0]`` as ``%04hx``, 64 lower-case hex
digits). :func:`pack_bits` packs 8 bits a byte, first bit in the most significant position
(``np.packbits``), so the 32 bytes of a hash are exactly ``bytes.fromhex(hex)`` (hex form checked
against the C++ ``Hash256::format``). That ``uint8 [N, 32]`` array is what FAISS binary indexes
(``faiss.IndexBinaryFlat(256)``) take, and their Hamming distances equal :func:`hamming` on the hex
strings.

Exactness. Every step above is done with elementwise IEEE float32 operations in the reference's
order: the box filter is a sequential scan along the filtered axis (vectorised over all rows of all
images of the batch), the DCT accumulates its 64 products one by one (no BLAS, no FMA), and divisions
are true divisions by device tensors (CUDA turns a division by a Python scalar into a multiplication
by its reciprocal). On x86-64 builds of ``pdqhash`` (compiled without FMA contraction) the hashes and
qualities are therefore identical; builds that contract ``a*b + c`` into FMA (e.g. aarch64 with GCC's
default ``-ffp-contract=fast``) may differ from both by a bit on rare near-median coefficients.

Fast path (``exact=False``, the default on CPU). Steps 1 and 3 are linear, and the row and column
filters are separable, so luma, both Jarosz passes along an axis and the decimation fold into one
matrix per axis: ``small = R @ Y @ C^T`` with ``R = S_H B_H^2`` (``[64, H]``) and ``C = S_W B_W^2``
(``[64, W]``), ``B`` the box filter's matrix (built by running the exact path's scan on the identity,
so the shrinking windows at both ends are the reference's) and ``S`` the rows ``decimateFloat`` keeps.
The luma weights are folded into ``C`` too (``[3 W, 64]``), so a frame costs one uint8-to-float32
conversion and one float32 matrix product ``[H, 3 W] @ [3 W, 64]`` (done in cache-sized blocks of
rows on CPU), then a small ``[64, H] @ [H, 64]`` one; the DCT is a float64 ``D A D^T``. On CPU it
runs on one torch thread (restored afterwards; see ``_FAST_CPU_THREADS``): about 3 ms a 720p frame,
against ~11-15 ms for ``pdqhash`` and ~24-30 ms for the exact path. The
float32 products round differently from the reference's running sums, so a coefficient within
rounding noise of the median can flip; on the generated test images and on decoded video frames
(``benchmarks/pdq_compare_clips.py``) the hashes are identical or a few bits apart on rare frames.
Flat frames (quality 0), whose hashes are rounding noise in the reference too, get other hashes.

Images of different sizes: pass a list (or tuple) of ``[H, W, 3]`` arrays; they are grouped by size
internally and the results come back in input order.

Note for comparisons: ``pdqhash.compute`` reads its float32 luma buffer as C-ordered, so it hashes a
garbled image when given a non-C-contiguous array (e.g. a transposed view); give it
``np.ascontiguousarray(rgb)``. This module hashes any view as the image it shows.

Example:
    >>> batch = pdq_hash_batch(frames, device="cuda")      # frames: uint8 [N, H, W, 3] RGB
    >>> batch.bits.shape, batch.quality.shape
    ((N, 256), (N,))
    >>> hexes = batch.hex()                                 # 64 hex digits each, ThreatExchange format
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vmatch.errors import UsageError
from vmatch.signals.pdq_bits import (
    DIHEDRAL_NAMES,
    HASH_BITS,
    HEX_LENGTH,
    PDQBatch,
    bits_to_hex,
    hamming,
    hex_to_bits,
    pack_bits,
    unpack_bits,
)
from vmatch.signals.pdq_exact import (  # noqa: F401 - _box_scan, _decimation_indices, _window_size: tests
    _box_scan,
    _decimation_indices,
    _hash_luma,
    _luma_hwn,
    _luma_hwn_numpy,
    _window_size,
)
from vmatch.signals.pdq_fast import _filter_matrix, _hash_rgb_fast  # noqa: F401 - _filter_matrix: tests
from vmatch.threads import torch_threads

__all__ = [
    "DIHEDRAL_NAMES",
    "HASH_BITS",
    "HEX_LENGTH",
    "MIN_HASHABLE_DIM",
    "PDQBatch",
    "bits_to_hex",
    "hamming",
    "hex_to_bits",
    "pack_bits",
    "pdq_hash",
    "pdq_hash_batch",
    "unpack_bits",
]

#: Images with a side smaller than this get the all-zero hash and quality 0 (as in the reference).
MIN_HASHABLE_DIM = 5
# Default work per chunk on CUDA, in pixels: bounds GPU memory (about 30 bytes a pixel at the peak)
# while giving each sequential box-filter step enough work to amortise its kernel launches.
_CUDA_CHUNK_PIXELS = 1 << 27
# On CPU, each box-filter step works on one slice of about max(H, W) * n values; torch runs ops on
# fewer than 32768 elements (its GRAIN_SIZE) on one thread. Staying below it keeps the thousands of
# tiny steps free of OpenMP fork/join overhead, which is catastrophic when the cores are busy (a
# measured 70x slowdown on a loaded 2-core machine); the big elementwise ops still use all threads.
_CPU_SLICE_ELEMENTS = 32767
# Fast path: pixels hashed together (the float32 copy of the RGB chunk is 12 bytes a pixel).
_FAST_CHUNK_PIXELS = 1 << 23
# Fast path on CPU: torch threads while it runs. One thread: at 720p about 3 ms a frame, and with two
# threads on a machine whose cores are busy (a video decoder, other processes) OpenMP's fork/join made
# each frame ~15x *slower* (measured: 50 ms a frame on 2 cores at load 3); a second core helps little
# even when idle, and the caller can hash several chunks in parallel processes instead.
_FAST_CPU_THREADS = 1


# --------------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------------


def pdq_hash(frame: Any, *, device: str = "cpu", exact: bool | None = None) -> tuple[str, int]:
    """PDQ hash of one RGB image: ``(hex, quality)``.

    ``frame`` is ``uint8 [H, W, 3]`` RGB (numpy array or torch tensor). Same result as
    ``pdq_hash_batch(frame[None], device=device, exact=exact)``.
    """
    shape = tuple(getattr(frame, "shape", ()))
    if len(shape) != 3:
        got = shape or type(frame).__name__
        raise UsageError(f"pdq_hash: expected one uint8 RGB image [H, W, 3], got {got}")
    batch = pdq_hash_batch(frame[None], device=device, exact=exact)
    return bits_to_hex(batch.bits)[0], int(batch.quality[0])


def pdq_hash_batch(
    frames: Any,
    *,
    device: str = "cpu",
    dihedral: bool = False,
    batch_size: int | None = None,
    exact: bool | None = None,
) -> PDQBatch:
    """PDQ hashes (and quality scores) of a batch of RGB frames, computed with torch.

    Args:
        frames: ``uint8 [N, H, W, 3]`` RGB as a numpy array or a torch tensor (on any device; it is
            moved to ``device``), or a list/tuple of ``uint8 [H, W, 3]`` images of any sizes (grouped by
            size internally; results in input order).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        dihedral: also return the hashes of the 7 other rotations/flips of each frame
            (:data:`DIHEDRAL_NAMES`), derived from one DCT as the reference does.
        batch_size: frames hashed together; ``None`` picks it from the frame size (on CUDA about
            128 Mi pixels a chunk, about 4 GiB of GPU memory; on CPU ``32767 // max(H, W)`` frames,
            e.g. 25 at 720p, which keeps each of the many small box-filter steps on one thread; with
            the fast path about 8 Mi pixels a chunk, e.g. 9 frames at 720p).
        exact: ``True``: the bit-exact replay of the reference's float32 arithmetic (see "Exactness"
            in the module docstring). ``False``: the fast path (see "Fast path"): the same filter,
            decimation and DCT as matrix products, within a few bits of the reference on rare
            frames. ``None`` (default): fast on CPU, exact on CUDA (where the replay is fast).

    Returns:
        :class:`PDQBatch` with ``bits`` ``uint8 [N, 256]`` (``[N, 8, 256]`` with ``dihedral``) and
        ``quality`` ``int32 [N]``; with ``exact=True`` identical to ``pdqhash.compute``
        (``compute_dihedral``) on x86-64.

    Raises:
        UsageError: frames of the wrong type, dtype or shape, bad ``batch_size``, unknown or
            unavailable device.
    """
    import torch

    from vmatch.embed import resolve_device

    if not isinstance(dihedral, (bool, np.bool_)):
        raise UsageError(f"pdq_hash_batch: dihedral must be True or False, got {dihedral!r}")
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise UsageError(f"pdq_hash_batch: batch_size must be None or an integer >= 1, got {batch_size!r}")
    if exact is not None and not isinstance(exact, (bool, np.bool_)):
        raise UsageError(f"pdq_hash_batch: exact must be None, True or False, got {exact!r}")
    if isinstance(device, torch.device):
        device = str(device)
    dev = torch.device(resolve_device(device))
    use_exact = bool(exact) if exact is not None else dev.type != "cpu"
    n_var = len(DIHEDRAL_NAMES) if dihedral else 1

    groups = _group_frames(frames)
    n_total = sum(len(idx) for idx, _ in groups)
    bits_out = np.zeros((n_total, n_var, HASH_BITS), dtype=np.uint8)
    quality_out = np.zeros(n_total, dtype=np.int32)
    for indices, stack in groups:
        n, height, width = int(stack.shape[0]), int(stack.shape[1]), int(stack.shape[2])
        if n == 0 or height < MIN_HASHABLE_DIM or width < MIN_HASHABLE_DIM:
            continue  # the reference's all-zero hash, quality 0
        if batch_size is not None:
            step = int(batch_size)
        elif use_exact:
            step = _auto_chunk(height, width, dev.type)
        else:
            step = max(1, _FAST_CHUNK_PIXELS // (height * width))
        for start in range(0, n, step):
            chunk = stack[start : start + step]
            with torch.no_grad():
                if not use_exact and dev.type == "cpu":
                    with torch_threads(_FAST_CPU_THREADS):
                        bits, quality = _hash_rgb_fast(chunk, dev, dihedral=bool(dihedral))
                elif not use_exact:
                    bits, quality = _hash_rgb_fast(chunk, dev, dihedral=bool(dihedral))
                else:
                    if isinstance(chunk, np.ndarray) and dev.type == "cpu":
                        luma = _luma_hwn_numpy(chunk)  # numpy's uint8 -> float32 paths are faster on CPU
                    elif isinstance(chunk, np.ndarray):
                        luma = _luma_hwn(torch.from_numpy(np.ascontiguousarray(chunk)).to(dev))
                    else:
                        luma = _luma_hwn(chunk.to(dev))
                    bits, quality = _hash_luma(luma, dihedral=bool(dihedral))
            sel = indices[start : start + step]
            bits_out[sel] = bits.reshape(len(sel), n_var, HASH_BITS).cpu().numpy()
            quality_out[sel] = quality.cpu().numpy()
    return PDQBatch(bits=bits_out if dihedral else bits_out[:, 0], quality=quality_out)


def _auto_chunk(height: int, width: int, device_type: str) -> int:
    """Frames hashed together when ``batch_size`` is None."""
    if device_type == "cuda":
        return max(1, _CUDA_CHUNK_PIXELS // (height * width))
    return max(1, _CPU_SLICE_ELEMENTS // max(height, width))


def _group_frames(frames: Any) -> list[tuple[np.ndarray, Any]]:
    """Validate ``frames``; return ``[(indices, stack [n, H, W, 3])]`` with one entry per frame size."""
    import torch

    if isinstance(frames, (np.ndarray, torch.Tensor)):
        _check_rgb(frames, "frames", ndim=4)
        return [(np.arange(int(frames.shape[0])), frames)]
    if not isinstance(frames, (list, tuple)):
        raise UsageError(
            "pdq_hash_batch: frames must be a uint8 [N, H, W, 3] numpy array or torch tensor, or a list of "
            f"uint8 [H, W, 3] images, got {type(frames).__name__}"
        )
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(frames):
        if not isinstance(img, (np.ndarray, torch.Tensor)):
            raise UsageError(
                f"pdq_hash_batch: frames[{i}] is a {type(img).__name__}, not a numpy array or torch tensor"
            )
        _check_rgb(img, f"frames[{i}]", ndim=3)
        by_size.setdefault((int(img.shape[0]), int(img.shape[1])), []).append(i)
    groups: list[tuple[np.ndarray, Any]] = []
    for idx in by_size.values():
        items = [frames[i] for i in idx]
        if all(isinstance(t, torch.Tensor) and t.device == items[0].device for t in items):
            stack: Any = torch.stack(items)
        else:  # numpy arrays, or tensors mixed with arrays / on several devices: stack on the host
            stack = np.stack([t.cpu().numpy() if isinstance(t, torch.Tensor) else t for t in items])
        groups.append((np.asarray(idx, dtype=np.int64), stack))
    return groups


def _check_rgb(arr: Any, name: str, *, ndim: int) -> None:
    """Raise :class:`UsageError` unless ``arr`` is uint8 RGB of ``ndim`` dimensions (3: one image)."""
    import torch

    want = "[H, W, 3]" if ndim == 3 else "[N, H, W, 3]"
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) != ndim or shape[-1] != 3:
        hint = "; for one image use pdq_hash(image) or image[None]" if ndim == 4 and len(shape) == 3 else ""
        raise UsageError(f"pdq_hash_batch: {name} must be uint8 RGB {want}, got shape {shape}{hint}")
    dtype_ok = arr.dtype == np.uint8 if isinstance(arr, np.ndarray) else arr.dtype == torch.uint8
    if not dtype_ok:
        raise UsageError(
            f"pdq_hash_batch: {name} must have dtype uint8 (RGB 0..255), got {arr.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
