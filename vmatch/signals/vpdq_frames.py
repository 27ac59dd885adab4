"""vPDQ frames: :class:`VPDQFrame`, one sampled frame of a video's vPDQ hash, and its packed form.

Where it sits: the record every other vPDQ module passes around (:mod:`vmatch.signals.vpdq_hash`
makes them, :mod:`vmatch.signals.vpdq_io` reads and writes them, :mod:`vmatch.signals.vpdq_match`
compares them); the format and the rule are described in :mod:`vmatch.signals.vpdq`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vmatch.errors import UsageError
from vmatch.signals.rules import HASH_BITS, HEX_LENGTH

__all__ = ["VPDQFrame", "pack_frames"]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class VPDQFrame:
    """One sampled frame of a vPDQ hash (the reference's ``vpdqFeature``).

    Attributes:
        frame_number: the frame's index among the decoded frames of the video (0-based), as the
            reference numbers it.
        hex: the frame's PDQ hash, 64 lower-case hex digits (ThreatExchange format).
        quality: PDQ quality, 0..100 (below :data:`VPDQ_QUALITY_THRESHOLD` the frame is not matched).
        timestamp: seconds from the start of the video.
    """

    frame_number: int
    hex: str
    quality: int
    timestamp: float

    def __post_init__(self) -> None:
        if not isinstance(self.frame_number, (int, np.integer)) or isinstance(self.frame_number, bool):
            raise UsageError(f"VPDQFrame: frame_number must be an integer, got {self.frame_number!r}")
        if self.frame_number < 0:
            raise UsageError(f"VPDQFrame: frame_number must be >= 0, got {self.frame_number}")
        if (
            not isinstance(self.hex, str)
            or len(self.hex) != HEX_LENGTH
            or not set(self.hex) <= _HEX_DIGITS
        ):
            raise UsageError(f"VPDQFrame: hex must be {HEX_LENGTH} hex digits, got {self.hex!r:.80}")
        if not isinstance(self.quality, (int, np.integer)) or isinstance(self.quality, bool):
            raise UsageError(f"VPDQFrame: quality must be an integer, got {self.quality!r}")
        if not 0 <= self.quality <= 100:
            raise UsageError(f"VPDQFrame: quality must be between 0 and 100, got {self.quality}")
        if (
            not isinstance(self.timestamp, (int, float, np.floating, np.integer))
            or isinstance(self.timestamp, bool)
            or not math.isfinite(self.timestamp)
            or self.timestamp < 0
        ):
            raise UsageError(f"VPDQFrame: timestamp must be a finite number >= 0, got {self.timestamp!r}")
        # Canonical types and case, so that equal frames compare equal and hash alike.
        object.__setattr__(self, "frame_number", int(self.frame_number))
        object.__setattr__(self, "hex", self.hex.lower())
        object.__setattr__(self, "quality", int(self.quality))
        object.__setattr__(self, "timestamp", float(self.timestamp))


def pack_frames(frames: Sequence[VPDQFrame]) -> np.ndarray:
    """Packed hashes ``uint8 [N, 32]`` of frames (``bytes.fromhex(hex)`` each), the layout of
    :func:`vmatch.signals.pdq.pack_bits` and of FAISS binary indexes."""
    frames = _check_frames(frames, "pack_frames")
    if not frames:
        return np.zeros((0, HASH_BITS // 8), dtype=np.uint8)
    return np.frombuffer(b"".join(bytes.fromhex(f.hex) for f in frames), dtype=np.uint8).reshape(
        len(frames), HASH_BITS // 8
    )


def _check_frames(frames: Any, name: str) -> list[VPDQFrame]:
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise UsageError(f"{name}: expected a list of VPDQFrame, got {type(frames).__name__}")
    out = list(frames)
    for i, f in enumerate(out):
        if not isinstance(f, VPDQFrame):
            raise UsageError(f"{name}: item {i} is a {type(f).__name__}, not a VPDQFrame")
    return out
