"""Edits on frame arrays, of the kinds planted copies undergo: joining clips, speed and frame-rate
changes, mirroring, cropping, resizing and borders (numpy only; each returns a new array)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.checks import _check_fps, _check_positive_int, _frames


def concat(*clips: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Join clips of the same frame size end to end: ``concat(a, b, c)`` or ``concat([a, b])``."""
    if len(clips) == 1 and not isinstance(clips[0], np.ndarray):
        clips = tuple(clips[0])
    arrays = [_frames(c, f"clip {i}") for i, c in enumerate(clips)]
    if not arrays:
        raise UsageError("concat needs at least one clip")
    size = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.shape[1:] != size:
            raise UsageError(
                f"concat: clip {i} has frames of {a.shape[2]}x{a.shape[1]}, clip 0 of "
                f"{size[1]}x{size[0]}; resize first"
            )
    return np.concatenate(arrays, axis=0)


def speed_change(frames: np.ndarray, fps: float, factor: float) -> np.ndarray:
    """Play ``frames`` (recorded at ``fps``) ``factor`` times faster, keeping the frame rate.

    Output frame ``i`` shows input time ``i * factor / fps`` (the input frame on screen then);
    the output has ``ceil(N / factor)`` frames. ``factor`` < 1 slows down (frames repeat).
    """
    arr = _frames(frames)
    _check_fps(fps)
    factor = _check_fps(factor, "factor")
    n_out = max(1, math.ceil(arr.shape[0] / factor - 1e-9))
    idx = np.floor(np.arange(n_out) * factor + 1e-9).astype(np.int64)
    return arr[np.minimum(idx, arr.shape[0] - 1)]


def fps_change(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample ``frames`` from ``fps_in`` to ``fps_out`` keeping the duration (drop/repeat).

    Output frame ``j`` shows input time ``j / fps_out``.
    """
    arr = _frames(frames)
    fin = _check_fps(fps_in, "fps_in")
    fout = _check_fps(fps_out, "fps_out")
    n_out = max(1, math.ceil(arr.shape[0] * fout / fin - 1e-9))
    idx = np.floor(np.arange(n_out) * fin / fout + 1e-9).astype(np.int64)
    return arr[np.minimum(idx, arr.shape[0] - 1)]


def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirror every frame left-right."""
    return np.ascontiguousarray(_frames(frames)[:, :, ::-1])


def crop(frames: np.ndarray, *, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Keep the ``height`` x ``width`` window whose top-left corner is (``top``, ``left``)."""
    arr = _frames(frames)
    h, w = arr.shape[1:3]
    if not (0 <= top and 0 <= left and 1 <= height and 1 <= width):
        raise UsageError(
            f"crop window must have top, left >= 0 and a positive size, got top={top} left={left} "
            f"height={height} width={width}"
        )
    if top + height > h or left + width > w:
        raise UsageError(
            f"crop window {width}x{height}+{left}+{top} does not fit in frames of {w}x{h}"
        )
    return np.ascontiguousarray(arr[:, top : top + height, left : left + width])


def resize(frames: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Bilinear resize of every frame to ``height`` x ``width`` (numpy only, pixel-centre aligned)."""
    arr = _frames(frames)
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    n, h, w = arr.shape[:3]
    if (h, w) == (height, width):
        return arr.copy()
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0).astype(np.float32)[None, :, None, None]
    fx = (xs - x0).astype(np.float32)[None, None, :, None]
    out = np.empty((n, height, width, 3), np.uint8)
    for i0 in range(0, n, 64):  # bounded temporary memory
        a = arr[i0 : i0 + 64].astype(np.float32)
        top = a[:, y0][:, :, x0] * (1 - fx) + a[:, y0][:, :, x1] * fx
        bot = a[:, y1][:, :, x0] * (1 - fx) + a[:, y1][:, :, x1] * fx
        out[i0 : i0 + 64] = np.clip(top * (1 - fy) + bot * fy + 0.5, 0, 255).astype(np.uint8)
    return out


def add_border(
    frames: np.ndarray,
    *,
    top: int = 0,
    bottom: int = 0,
    left: int = 0,
    right: int = 0,
    color: Sequence[int] | int = 0,
) -> np.ndarray:
    """Surround every frame with a solid border (letterbox / pillarbox); the frame grows."""
    arr = _frames(frames)
    for name, v in (("top", top), ("bottom", bottom), ("left", left), ("right", right)):
        _check_positive_int(name, v, minimum=0)
    n, h, w = arr.shape[:3]
    out = np.empty((n, h + top + bottom, w + left + right, 3), np.uint8)
    out[...] = np.broadcast_to(np.asarray(color, dtype=np.uint8), (3,))
    out[:, top : top + h, left : left + w] = arr
    return out
