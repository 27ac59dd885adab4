"""Decoding's limits and failure wording: the frame sizes accepted, the exceptions PyAV raises for bad
input, and how such a failure becomes a :class:`vmatch.errors.DecodeError` naming the file.

Where it sits: shared by every part of :mod:`vmatch.decode` (opening, the decoding loop, probe, sampling).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import av.error

from vmatch.errors import DecodeError

#: Smallest accepted frame side in pixels. swscale scales even 1-pixel-high frames, so they are
#: decoded (their content is degenerate but legitimate); only a size of 0 is refused.
MIN_SIDE = 1
#: Largest accepted frame side in pixels (8K UHD 7680x4320 and DCI 8K 8192x4320 fit).
MAX_SIDE = 8192
#: Largest accepted frame area in pixels (8192 x 8192 = 64 Mi pixels).
MAX_PIXELS = 8192 * 8192

# Exceptions PyAV raises for bad input (FFmpegError subclasses also derive from OSError/ValueError).
FFMPEG_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError)


def check_frame_size(path: str | os.PathLike[str], width: int, height: int) -> None:
    """Raise :class:`DecodeError` when a ``width`` x ``height`` frame is outside the accepted limits.

    Accepted: each side between :data:`MIN_SIDE` and :data:`MAX_SIDE` pixels and at most
    :data:`MAX_PIXELS` pixels in all (8K 7680x4320 is accepted).
    """
    name = os.fspath(path)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise DecodeError(
            name,
            f"video frame size {width}x{height} is invalid (a side is smaller than {MIN_SIDE} px); "
            "the file is probably corrupt",
        )
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise DecodeError(
            name,
            f"video frame size {width}x{height} is too large (limits: {MAX_SIDE} px per side and "
            f"{MAX_PIXELS // (1 << 20)} Mi pixels; 8K 7680x4320 is accepted); "
            "downscale the video first, e.g. ffmpeg -i in -vf scale=3840:-2 out.mp4",
        )


def describe(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


@contextmanager
def ffmpeg_failures(name: str, what: str) -> Iterator[None]:
    """Inside the block, a PyAV/FFmpeg failure (or running out of memory) becomes
    ``DecodeError(name, f"{what} (<FFmpeg's reason>); the file is corrupt")``; a DecodeError passes as it is."""
    try:
        yield
    except DecodeError:
        raise
    except (*FFMPEG_ERRORS, MemoryError) as exc:
        raise DecodeError(name, f"{what} ({describe(exc)}); the file is corrupt") from exc
