"""Opening a video file with PyAV: the container and its video stream, still images refused, and every
failure to open turned into a one-line :class:`vmatch.errors.DecodeError` reason.

Where it sits: **decode**; used by :func:`vmatch.decode.probe` and :func:`vmatch.decode.iter_frames`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
import av.error

from vmatch.decode.inputs import check_file
from vmatch.decode.limits import FFMPEG_ERRORS, check_frame_size, describe
from vmatch.errors import DecodeError


def _looks_like_mp4(name: str) -> bool:
    try:
        with open(name, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")


#: Demuxers of single pictures (FFmpeg's ``*_pipe`` image demuxers and ``image2``).
_IMAGE_DEMUXER = "image2"
#: Demuxers of animations that may hold a single picture (then a still image, not a video).
_ANIMATION_DEMUXERS = ("gif", "apng", "webp")


def _refuse_still_image(name: str, container: Any) -> None:
    """A still image (PNG, JPEG, a GIF or APNG of one frame, ...) is not a video: refuse it, so that
    a picture is never indexed or matched as a video of one frame."""
    fmt = container.format.name or ""
    kind = fmt.removesuffix("_pipe")
    if fmt == _IMAGE_DEMUXER or fmt.endswith("_pipe"):
        raise DecodeError(name, f"is a still image ({kind}), not a video; vmatch matches videos")
    if fmt in _ANIMATION_DEMUXERS and container.streams.video:
        stream = container.streams.video[0]
        packets = 0
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                if packets > 1:
                    break
        container.seek(0, stream=stream)
        if packets <= 1:
            raise DecodeError(name, f"is a still image (a {kind.upper()} of one frame), not a video; vmatch matches videos")


def _open_failure(name: str, exc: BaseException) -> str:
    """The reason FFmpeg could not open ``name``. A header that declares an impossible frame size
    is refused by FFmpeg with an odd errno (EBUSY, EINVAL) and the size only goes to its log,
    which vmatch never captures (PyAV's log callback deadlocks threaded decoding); so the size is
    read from the header itself (:mod:`vmatch.headers`)."""
    from vmatch.headers import declared_frame_size

    declared = declared_frame_size(name)
    if declared is not None:
        w, h = declared
        try:
            check_frame_size(name, w, h)
        except DecodeError as e:
            return e.reason
    if getattr(exc, "errno", None) in (errno.EBUSY, errno.EINVAL, errno.ENOMEM, errno.ERANGE):
        return ("cannot be opened as a video: FFmpeg refused its stream parameters (an impossible value in its "
                "header, such as an oversized frame size); the file is corrupt or unsupported")
    return f"cannot be opened as a video ({describe(exc)}); the file is corrupt or unsupported"


@contextmanager
def open_video(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any, Any]]:
    """Open ``path`` and yield ``(name, container, video_stream)``; close it afterwards.

    Every failure is turned into a :class:`DecodeError` with a one-line reason.
    """
    name = check_file(path)
    try:
        container = av.open(name, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        if _looks_like_mp4(name):
            reason = (
                "looks like an MP4/MOV file but cannot be read: it is probably truncated "
                "(incomplete download or copy; its index, the 'moov' atom, is missing) or corrupt; "
                "get a complete copy of the file"
            )
        else:
            reason = (
                "is not a video file, or its format is unknown to FFmpeg "
                f"({describe(exc)}); check that it is a video"
            )
        raise DecodeError(name, reason) from exc
    except PermissionError as exc:
        raise DecodeError(name, "permission denied; make the file readable") from exc
    except FFMPEG_ERRORS as exc:
        raise DecodeError(name, _open_failure(name, exc)) from exc
    try:
        _refuse_still_image(name, container)
        streams = [
            s
            for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        if not streams:
            if not container.streams:
                raise DecodeError(name, "holds no streams at all (an empty container); there is no video to match")
            kinds = sorted({s.type for s in container.streams})
            extra = " (only cover art)" if container.streams.video else ""
            only_audio = kinds == ["audio"]
            raise DecodeError(
                name,
                f"has no video stream{extra}; streams found: {', '.join(kinds)}"
                + (" (an audio-only file cannot be matched)" if only_audio else ""),
            )
        stream = streams[0]
        ctx = stream.codec_context
        w, h = int(ctx.width or 0), int(ctx.height or 0)
        if w and h:
            check_frame_size(name, w, h)
        yield name, container, stream
    finally:
        container.close()
