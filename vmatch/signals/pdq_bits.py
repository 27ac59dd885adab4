"""PDQ hash records and bit helpers (numpy only): :class:`PDQBatch`, packing, hex form, Hamming.

Where it sits: the result side of :mod:`vmatch.signals.pdq` (which computes the hashes); the bit
layout (``bits[..., m]`` is bit ``255 - m`` of the reference's ``Hash256``, the ThreatExchange hex
form's bits most significant first, packed 8 a byte as FAISS binary indexes take them) is described
in that module's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vmatch.errors import UsageError
from vmatch.signals.rules import HASH_BITS, HEX_LENGTH

__all__ = [
    "DIHEDRAL_NAMES",
    "HASH_BITS",
    "HEX_LENGTH",
    "PDQBatch",
    "bits_to_hex",
    "hamming",
    "hex_to_bits",
    "pack_bits",
    "unpack_bits",
]

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
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


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
