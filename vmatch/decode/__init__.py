"""Video decoding with PyAV: probe a file, stream frames sampled by presentation time, find videos.

Everything here reads video with PyAV (its bundled FFmpeg) and never loads a whole video in memory:
:func:`iter_frames` keeps at most one decoded frame of look-ahead, whatever the length of the video.

Times are presentation times in seconds, taken from the frames' timestamps (``pts``) and made
relative to the first decoded frame, never from a frame counter. Frames are returned as RGB
``uint8`` arrays ``[H, W, 3]`` in *display* orientation: rotation/flip metadata (the display matrix)
is applied the way the ``ffmpeg`` command line applies it (autorotate).

Every problem a user can cause (missing file, not a video, truncated or corrupt file, audio-only
file, absurd frame size...) is raised as :class:`vmatch.errors.DecodeError` naming the file, never as
a raw PyAV/FFmpeg exception.

The stage, one concept a module:

- :mod:`~vmatch.decode.inputs`: which files are videos (directory scanning, checks before FFmpeg, SHA-256);
- :mod:`~vmatch.decode.limits`: accepted frame sizes, FFmpeg's exception types, failures as DecodeError;
- :mod:`~vmatch.decode.container`: opening a file, its video stream, still images refused;
- :mod:`~vmatch.decode.orientation`: display matrix, anamorphic pixels, display size;
- :mod:`~vmatch.decode.clock`: presentation times from pts/dts (or the declared rate);
- :mod:`~vmatch.decode.decoder`: the decoding loop, decoder options, keyframe mode, damage reports;
- :mod:`~vmatch.decode.probe`: :func:`probe`, a :class:`vmatch.types.VideoInfo` without a full decode;
- :mod:`~vmatch.decode.sampling`: :func:`iter_frames`, fixed-rate sampling by presentation time.
"""

from __future__ import annotations

from vmatch.decode.inputs import VIDEO_EXTENSIONS, find_videos, sha256_file
from vmatch.decode.limits import MAX_PIXELS, MAX_SIDE, MIN_SIDE, check_frame_size
from vmatch.decode.probe import probe
from vmatch.decode.sampling import check_keyframe_gop, iter_frames

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "VIDEO_EXTENSIONS",
    "check_frame_size",
    "check_keyframe_gop",
    "find_videos",
    "iter_frames",
    "probe",
    "sha256_file",
]
