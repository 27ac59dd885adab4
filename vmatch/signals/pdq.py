"""PDQ perceptual hashes of RGB frames, batched in torch (CPU or CUDA), bit-compatible with Meta's reference.

PDQ is the 256-bit perceptual image hash of Meta's ThreatExchange (``pdq/cpp/hashing/pdqhashing.cpp``,
``pdq/cpp/downscaling/downscaling.cpp``), also published on PyPI as ``pdqhash``. This module computes it
for a whole batch of frames at once with torch tensor operations, on CPU or GPU, and replicates the
reference's float32 arithmetic step by step so that its hashes are the same bits as
``pdqhash.compute(rgb)`` on the same ``uint8`` RGB arrays (see "Exactness" below) with ``exact=True``
(the default on CUDA); on CPU the default is a fast path, several times faster, whose hashes are
identical on nearly all frames (see "Fast path").

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

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vmatch.errors import UsageError
from vmatch.threads import torch_threads

if TYPE_CHECKING:  # pragma: no cover
    import torch

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

#: Number of bits of a PDQ hash.
HASH_BITS = 256
#: Length of the ThreatExchange hex form of a hash.
HEX_LENGTH = 64
#: Images with a side smaller than this get the all-zero hash and quality 0 (as in the reference).
MIN_HASHABLE_DIM = 5
#: Order of the eight variants of ``pdq_hash_batch(..., dihedral=True)``, the reference's order
#: (``pdqhash.compute_dihedral``). Each is (close to) the hash of the transformed image ``im``:
#: ``np.rot90(im, 1)`` (counter-clockwise), ``np.rot90(im, 2)``, ``np.rot90(im, 3)``, ``im[::-1]``
#: (upside down, the reference's ``FlipX``), ``im[:, ::-1]`` (mirror, ``FlipY``), ``im.transpose(1, 0, 2)``
#: (``FlipPlus1``), ``im.transpose(1, 0, 2)[::-1, ::-1]`` (``FlipMinus1``). Equal on sizes whose filter
#: windows and sampling grid are symmetric (64, 320, 576... pixels a side); elsewhere a few to ~20 bits
#: apart, in the reference as here.
DIHEDRAL_NAMES: tuple[str, ...] = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_x",
    "flip_y",
    "transpose",
    "transverse",
)

_SIDE = 64  # the reference's downsampled size
_DCT_SIZE = 16  # frequencies 1..16 along each axis
_JAROSZ_PASSES = 2  # PDQ_NUM_JAROSZ_XY_PASSES
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
# Fast path on CPU: image rows converted to float32 and multiplied at a time (about 4 MB at 720p).
_FAST_BLOCK_ROWS = 256
# Fast path on CPU: torch threads while it runs. One thread: at 720p about 3 ms a frame, and with two
# threads on a machine whose cores are busy (a video decoder, other processes) OpenMP's fork/join made
# each frame ~15x *slower* (measured: 50 ms a frame on 2 cores at load 3); a second core helps little
# even when idle, and the caller can hash several chunks in parallel processes instead.
_FAST_CPU_THREADS = 1
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


# --------------------------------------------------------------------------------------------------
# Results and bit helpers (numpy only)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PDQBatch:
    """PDQ hashes of a batch of frames.

    Attributes:
        bits: ``uint8`` 0/1, ``[N, 256]``, or ``[N, 8, 256]`` with ``dihedral=True`` (variants in
            :data:`DIHEDRAL_NAMES` order). Bit order as ``pdqhash.compute`` returns it (see the module
            docstring): the hex form's bits, most significant first.
        quality: ``int32 [N]``, the reference's quality score, 0..100 (below about 50, the reference
            considers the hash unreliable: flat or featureless images).
    """

    bits: np.ndarray
    quality: np.ndarray

    @property
    def dihedral(self) -> bool:
        """Whether :attr:`bits` holds the eight dihedral variants of each frame."""
        return self.bits.ndim == 3

    def __len__(self) -> int:
        return int(self.bits.shape[0])

    def hex(self) -> list[str] | list[list[str]]:
        """ThreatExchange hex strings: ``list[str]`` (one per frame), or one list of 8 per frame when
        :attr:`dihedral`."""
        if self.dihedral:
            flat = bits_to_hex(self.bits.reshape(-1, HASH_BITS))
            return [flat[i : i + len(DIHEDRAL_NAMES)] for i in range(0, len(flat), len(DIHEDRAL_NAMES))]
        return bits_to_hex(self.bits)

    def packed(self) -> np.ndarray:
        """:func:`pack_bits` of :attr:`bits`: ``uint8 [N, 32]`` (or ``[N, 8, 32]``)."""
        return pack_bits(self.bits)


def _check_bits(bits: Any, name: str) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim == 0 or arr.shape[-1] != HASH_BITS:
        raise UsageError(f"{name}: expected bits of shape [..., {HASH_BITS}], got shape {arr.shape}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise UsageError(f"{name}: expected 0/1 integer or bool bits, got dtype {arr.dtype}")
    if arr.dtype != np.bool_ and arr.size and (arr.min() < 0 or arr.max() > 1):
        raise UsageError(f"{name}: bits must be 0 or 1, found values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8, copy=False)


def pack_bits(bits: Any) -> np.ndarray:
    """Pack hash bits ``[..., 256]`` (0/1) into bytes ``uint8 [..., 32]``.

    Eight bits a byte, the first bit in the most significant position (``np.packbits``), so the 32 bytes
    of a hash are ``bytes.fromhex(hex)`` of its ThreatExchange hex form. This is the code layout of FAISS
    binary indexes (``faiss.IndexBinaryFlat(256)``), whose Hamming distances then equal :func:`hamming`.
    """
    return np.packbits(_check_bits(bits, "pack_bits"), axis=-1)


def unpack_bits(packed: Any) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint8 [..., 32]`` to bits ``uint8 [..., 256]``."""
    arr = np.asarray(packed)
    if arr.dtype != np.uint8 or arr.ndim == 0 or arr.shape[-1] != HASH_BITS // 8:
        raise UsageError(
            f"unpack_bits: expected uint8 bytes of shape [..., {HASH_BITS // 8}], got {arr.dtype} {arr.shape}"
        )
    return np.unpackbits(arr, axis=-1)


def bits_to_hex(bits: Any) -> list[str]:
    """ThreatExchange hex strings (64 lower-case hex digits) of hashes given as bits.

    ``bits`` is ``[256]`` (one hash, a list of one string comes back) or ``[N, 256]``; for the
    ``[N, 8, 256]`` dihedral bits use :meth:`PDQBatch.hex` or reshape to ``[-1, 256]``.
    """
    arr = _check_bits(bits, "bits_to_hex")
    if arr.ndim > 2:
        raise UsageError(
            f"bits_to_hex: expected bits of shape [256] or [N, 256], got {arr.shape}; "
            "reshape(-1, 256) dihedral bits or use PDQBatch.hex()"
        )
    packed = np.packbits(arr.reshape(-1, HASH_BITS), axis=-1)
    return [row.tobytes().hex() for row in packed]


def _check_hex(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise UsageError(f"{name}: expected a 64-character hex string, got {type(text).__name__}")
    text = text.strip()
    if len(text) != HEX_LENGTH or not set(text) <= _HEX_DIGITS:
        raise UsageError(
            f"{name}: a PDQ hash is {HEX_LENGTH} hex digits (ThreatExchange format), got {text[:80]!r}"
        )
    return text.lower()


def hex_to_bits(text: str | Sequence[str]) -> np.ndarray:
    """Bits ``uint8 [256]`` of a ThreatExchange hex string (``[N, 256]`` for a sequence of strings).

    Inverse of :func:`bits_to_hex`. Raises :class:`UsageError` for a malformed string.
    """
    if isinstance(text, str):
        return np.unpackbits(np.frombuffer(bytes.fromhex(_check_hex(text, "hex_to_bits")), dtype=np.uint8))
    if not isinstance(text, Sequence):
        raise UsageError(
            f"hex_to_bits: expected a hex string or a sequence of them, got {type(text).__name__}"
        )
    rows = [bytes.fromhex(_check_hex(t, "hex_to_bits")) for t in text]
    buf = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), HASH_BITS // 8)
    return np.unpackbits(buf, axis=-1)


def hamming(a_hex: str, b_hex: str) -> int:
    """Hamming distance (number of differing bits, 0..256) between two hex-form PDQ hashes."""
    a = int(_check_hex(a_hex, "hamming"), 16)
    b = int(_check_hex(b_hex, "hamming"), 16)
    return (a ^ b).bit_count()


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


# --------------------------------------------------------------------------------------------------
# The algorithm, on one chunk of same-size frames already on the device
# --------------------------------------------------------------------------------------------------


def _hash_luma(luma: torch.Tensor, *, dihedral: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 luma ``[H, W, n]`` (H, W >= 5) -> (bool bits ``[n, V, 256]`` in pdqhash order, int32
    quality ``[n]``)."""
    import torch

    height, width, n = (int(s) for s in luma.shape)
    if height == _SIDE and width == _SIDE and not dihedral:
        small = luma  # pdqFloat256FromFloatLuma hashes 64x64 input as is (the dihedral path does not)
    else:
        small = _jarosz_decimate(luma)
    small = small.permute(2, 0, 1).contiguous()  # [n, 64, 64]
    quality = _quality(small)
    dct = _dct16(small)  # [n, 16, 16]
    if dihedral:
        dct = _dihedral_variants(dct)  # [n, 8, 16, 16]
    else:
        dct = dct[:, None]
    flat = dct.reshape(n, dct.shape[1], HASH_BITS)
    # torben() returns the 128th smallest of the 256 values (an element of the set).
    median = torch.sort(flat, dim=-1).values[..., HASH_BITS // 2 - 1 : HASH_BITS // 2]
    bits = (flat > median).flip(-1)  # bit k = 16 i + j of Hash256 goes to position 255 - k
    return bits, quality


# --------------------------------------------------------------------------------------------------
# Fast path: the linear part (luma, Jarosz filter, decimation) as two matrix products
# --------------------------------------------------------------------------------------------------


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
    if dihedral:
        dct = _dihedral_variants(dct)
    else:
        dct = dct[:, None]
    flat = dct.reshape(n, dct.shape[1], HASH_BITS)
    median = torch.sort(flat, dim=-1).values[..., HASH_BITS // 2 - 1 : HASH_BITS // 2]
    bits = (flat > median).flip(-1)
    return bits, quality


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
