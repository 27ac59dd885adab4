"""Display geometry of decoded frames: the display matrix (rotation, mirroring) applied the way the
``ffmpeg`` command line autorotates, anamorphic pixels, and the size shown on screen.

Where it sits: **decode**, between a decoded frame and the RGB array handed to sampling.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orientation:
    """How to turn a decoded image into its display orientation: transpose, then flip rows
    (vertical flip), then flip columns (horizontal flip). The 8 combinations cover every rotation
    by a multiple of 90 degrees with or without mirroring."""

    transpose: bool = False
    vflip: bool = False
    hflip: bool = False
    rotation: int = 0  # counter-clockwise degrees as FFmpeg reports them (ffprobe / frame.rotation)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        out = rgb
        if self.transpose:
            out = out.transpose(1, 0, 2)
        if self.vflip:
            out = out[::-1]
        if self.hflip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)


_IDENTITY = Orientation()


def _orientation_from_matrix(matrix: tuple[int, ...] | None) -> Orientation:
    """Turn a display matrix (9 int32, FFmpeg ``AV_FRAME_DATA_DISPLAYMATRIX`` layout, 16.16 fixed
    point) into the numpy operations that show the frame upright.

    Follows ``fftools`` (the ``ffmpeg`` command line's autorotate): ``theta`` is the clockwise
    angle ``-av_display_rotation_get(matrix)`` and mirroring is read from the matrix signs.
    Angles that are not multiples of 90 degrees are rounded to the nearest one (with a warning).
    """
    if matrix is None:
        return _IDENTITY
    m0, m1, _, m3, m4 = (v / 65536.0 for v in matrix[:5])
    s0 = math.hypot(m0, m3)
    s1 = math.hypot(m1, m4)
    if s0 == 0.0 or s1 == 0.0:
        return _IDENTITY
    ccw = -math.degrees(math.atan2(m1 / s1, m0 / s0))  # av_display_rotation_get
    theta = -round(ccw)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    quarter = int(round(theta / 90.0)) % 4
    if abs(theta - 90 * round(theta / 90.0)) > 1:
        _LOG.warning(
            "display matrix rotation of %.1f degrees is not a multiple of 90; using %d",
            theta,
            quarter * 90,
        )
    ccw_report = int(-quarter * 90)
    if ccw_report <= -180:
        ccw_report += 360
    if quarter == 1:  # 90 clockwise: "clock", or "cclock_flip" (plain transpose) when mirrored
        if m3 > 0:
            return Orientation(transpose=True, rotation=ccw_report)
        return Orientation(transpose=True, hflip=True, rotation=ccw_report)
    if quarter == 3:  # 270 clockwise: "cclock", or "clock_flip" when mirrored
        if m3 < 0:
            return Orientation(transpose=True, vflip=True, hflip=True, rotation=ccw_report)
        return Orientation(transpose=True, vflip=True, rotation=ccw_report)
    if quarter == 2:
        return Orientation(vflip=m4 < 0, hflip=m0 < 0, rotation=ccw_report)
    return Orientation(vflip=m4 < 0, rotation=0)


def frame_orientation(frame: av.VideoFrame) -> Orientation:
    try:
        sd = frame.side_data.get("DISPLAYMATRIX")
    except (KeyError, ValueError, TypeError):
        sd = None
    if sd is None:
        return _IDENTITY
    raw = bytes(sd)
    if len(raw) < 36:
        return _IDENTITY
    return _orientation_from_matrix(struct.unpack("<9i", raw[:36]))


def sample_aspect_ratio(stream: Any) -> Fraction:
    """Pixel aspect ratio: the container's value first, then the codec's (as FFmpeg guesses it)."""
    for sar in (getattr(stream, "sample_aspect_ratio", None),
                getattr(stream.codec_context, "sample_aspect_ratio", None)):  # fmt: skip
        if sar is not None and sar.numerator > 0 and sar.denominator > 0:
            return Fraction(sar)
    return Fraction(1)


def display_size(width: int, height: int, sar: Fraction, orient: Orientation) -> tuple[int, int]:
    """(height, width) shown on screen: anamorphic pixels stretched in width, then rotation."""
    w = max(1, int(round(width * sar))) if sar != 1 else width
    if orient.transpose:
        return w, height
    return height, w
