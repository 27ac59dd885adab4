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
"""

from __future__ import annotations

import errno
import logging
import math
import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from vmatch.errors import DecodeError, UsageError
from vmatch.types import VideoInfo

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

_LOG = logging.getLogger(__name__)

#: File extensions (lower case, without the dot) treated as videos when a directory is scanned by
#: :func:`find_videos`. Files named explicitly are accepted whatever their extension.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        "3g2", "3gp", "264", "265", "amv", "asf", "avi", "avs", "dv", "f4v", "flv", "gif", "h264",
        "h265", "hevc", "ivf", "m1v", "m2t", "m2ts", "m2v", "m4v", "mj2", "mjpeg", "mjpg", "mkv",
        "mov", "mp4", "mpeg", "mpg", "mts", "mxf", "nut", "ogg", "ogv", "qt", "rm", "rmvb", "ts",
        "vob", "webm", "wmv", "y4m", "yuv4mpeg",
    }
)  # fmt: skip

#: Smallest accepted frame side in pixels. swscale scales even 1-pixel-high frames, so they are
#: decoded (their content is degenerate but legitimate); only a size of 0 is refused.
MIN_SIDE = 1
#: Largest accepted frame side in pixels (8K UHD 7680x4320 and DCI 8K 8192x4320 fit).
MAX_SIDE = 8192
#: Largest accepted frame area in pixels (8192 x 8192 = 64 Mi pixels).
MAX_PIXELS = 8192 * 8192

# Consecutive packets that fail to decode before the decoder gives up on a file.
_MAX_CONSECUTIVE_ERRORS = 200
# Two timestamps closer than this (seconds) are considered equal when sampling.
_EPS = 1e-6
# Exceptions PyAV raises for bad input (FFmpegError subclasses also derive from OSError/ValueError).
_FFMPEG_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 of the file's content as a lower-case hex string.

    Reads ``chunk`` bytes at a time (memory bounded). Raises :class:`DecodeError` when the file
    cannot be read.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"sha256_file: chunk must be a positive number of bytes, got {chunk!r}")
    from vmatch.models import file_sha256

    name = _check_file(path)
    try:
        return file_sha256(name, chunk=chunk)
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc}); check permissions") from exc


def find_videos(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and directories into the list of video files to process.

    Directories are walked recursively (symlinked directories are not followed); their files whose
    extension is in :data:`VIDEO_EXTENSIONS` are kept, in sorted order; hidden files and hidden
    directories (name starting with ``.``) are skipped. Files named explicitly are kept whatever
    their extension (they fail later at decode time if they are not videos). Duplicates are
    dropped, first occurrence kept.

    Returns ``(videos, problems)`` where ``problems`` lists ``(path, reason)`` for paths that do
    not exist or directories that hold no video file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos: list[Path] = []
    seen: set[Path] = set()
    problems: list[tuple[str, str]] = []

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            videos.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _scan_dir(p)
            if not found:
                problems.append(
                    (
                        str(p),
                        "directory holds no video files (looked recursively for extensions "
                        "such as .mp4 .mkv .webm .avi .mov; hidden files skipped)",
                    )
                )
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        else:
            problems.append((str(p), "does not exist; check the path"))
    return videos, problems


def _scan_dir(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            ext = fname.rsplit(".", 1)[-1].lower() if "." in fname else ""
            if ext in VIDEO_EXTENSIONS:
                full = Path(dirpath) / fname
                if full.is_file():
                    out.append(full)
    return sorted(out)


def _check_file(path: str | os.PathLike[str]) -> str:
    """Cheap checks done before FFmpeg sees the file. Returns the path as a string."""
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"expected a file path, got {type(path).__name__}: {path!r}")
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DecodeError(name, "does not exist; check the path")
    if os.path.isdir(name):
        raise DecodeError(name, "is a directory, not a video file; name a file (or scan the directory)")
    try:
        size = os.path.getsize(name)
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise DecodeError(name, "is an empty file (0 bytes); the copy or download probably failed")
    if not os.access(name, os.R_OK):
        raise DecodeError(name, "permission denied; make the file readable")
    return name


# --------------------------------------------------------------------------------------------------
# Frame size and orientation
# --------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Orientation:
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


_IDENTITY = _Orientation()


def _orientation_from_matrix(matrix: tuple[int, ...] | None) -> _Orientation:
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
            return _Orientation(transpose=True, rotation=ccw_report)
        return _Orientation(transpose=True, hflip=True, rotation=ccw_report)
    if quarter == 3:  # 270 clockwise: "cclock", or "clock_flip" when mirrored
        if m3 < 0:
            return _Orientation(transpose=True, vflip=True, hflip=True, rotation=ccw_report)
        return _Orientation(transpose=True, vflip=True, rotation=ccw_report)
    if quarter == 2:
        return _Orientation(vflip=m4 < 0, hflip=m0 < 0, rotation=ccw_report)
    return _Orientation(vflip=m4 < 0, rotation=0)


def _frame_orientation(frame: av.VideoFrame) -> _Orientation:
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


def _sample_aspect_ratio(stream: Any) -> Fraction:
    """Pixel aspect ratio: the container's value first, then the codec's (as FFmpeg guesses it)."""
    for sar in (getattr(stream, "sample_aspect_ratio", None),
                getattr(stream.codec_context, "sample_aspect_ratio", None)):  # fmt: skip
        if sar is not None and sar.numerator > 0 and sar.denominator > 0:
            return Fraction(sar)
    return Fraction(1)


def _display_size(width: int, height: int, sar: Fraction, orient: _Orientation) -> tuple[int, int]:
    """(height, width) shown on screen: anamorphic pixels stretched in width, then rotation."""
    w = max(1, int(round(width * sar))) if sar != 1 else width
    if orient.transpose:
        return w, height
    return height, w


# --------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


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
    return f"cannot be opened as a video ({_describe(exc)}); the file is corrupt or unsupported"


@contextmanager
def _open_video(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any, Any]]:
    """Open ``path`` and yield ``(name, container, video_stream)``; close it afterwards.

    Every failure is turned into a :class:`DecodeError` with a one-line reason.
    """
    name = _check_file(path)
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
                f"({_describe(exc)}); check that it is a video"
            )
        raise DecodeError(name, reason) from exc
    except PermissionError as exc:
        raise DecodeError(name, "permission denied; make the file readable") from exc
    except _FFMPEG_ERRORS as exc:
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


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------


class _Clock:
    """Turns decoded frames into presentation times in seconds relative to the first frame.

    The timestamp of a frame is chosen like FFmpeg's ``best_effort_timestamp``
    (``guess_correct_pts``): the frame's ``pts``, unless pts values have gone backwards more often
    than the packets' ``dts`` (files whose pts were written in decoding order), then ``dts``.
    When a frame has neither (raw elementary streams such as ``.h264`` carry no timestamps at all)
    its time is the previous frame's time plus that frame's duration as declared by the stream
    (its frame rate), as the ``ffmpeg`` command line does, with a warning logged. Without any of
    those a :class:`DecodeError` is raised: a frame counter is never used silently.
    """

    def __init__(self, name: str, stream: Any) -> None:
        self.name = name
        self.time_base: Fraction | None = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.codec_context.framerate
        self.default_duration: Fraction | None = (
            Fraction(1) / Fraction(rate) if rate and Fraction(rate) > 0 else None
        )
        self.origin: Fraction | None = None  # absolute time of the first frame
        self.last_abs: Fraction | None = None
        self.last_dur: Fraction | None = None
        self.synthesised = 0  # frames whose time was derived from the previous frame's duration
        self.used_dts = 0  # frames timed by dts because pts were out of order or missing
        self.reset()

    def reset(self) -> None:
        """Forget the timestamp history (after a seek), keeping the origin."""
        self.last_abs = None
        self.last_dur = None
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None

    def _best_effort(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            if self._last_dts is not None and dts <= self._last_dts:
                self._faulty_dts += 1
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            if self._last_pts is not None and pts <= self._last_pts:
                self._faulty_pts += 1
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts
        if pts is not None and (dts is None or self._faulty_pts <= self._faulty_dts):
            return pts
        if dts is not None:
            self.used_dts += 1
        return dts

    def _duration(self, frame: av.VideoFrame, tb: Fraction | None) -> Fraction | None:
        d = getattr(frame, "duration", None)
        if d and tb and d > 0:
            return Fraction(d) * tb
        return self.default_duration

    def time(self, frame: av.VideoFrame) -> Fraction:
        """Absolute time of ``frame`` (seconds, exact); updates the clock."""
        tb_raw = frame.time_base or self.time_base
        tb = Fraction(tb_raw) if tb_raw else None
        stamp = self._best_effort(frame.pts, frame.dts) if tb is not None else None
        dur = self._duration(frame, tb)
        if stamp is not None and tb is not None:
            t = Fraction(stamp) * tb
        elif self.last_abs is None:
            t = self.origin if self.origin is not None else Fraction(0)
            self._count_synthesised(dur)
        elif self.last_dur is not None:
            t = self.last_abs + self.last_dur
            self._count_synthesised(dur)
        else:
            raise DecodeError(
                self.name,
                "video frames carry no timestamps and the stream declares no frame rate, so "
                "presentation times are unknown; remux it with a frame rate, e.g. "
                "ffmpeg -r 25 -i in.h264 -c copy out.mp4",
            )
        if self.origin is None:
            self.origin = t
        self.last_abs = t
        self.last_dur = dur
        return t

    def _count_synthesised(self, dur: Fraction | None) -> None:
        self.synthesised += 1
        if self.synthesised == 1:
            _LOG.warning(
                "%s: video frames carry no timestamps (raw elementary stream?); their times are "
                "derived from the frame rate the stream declares (%s fps)",
                self.name,
                f"{float(1 / dur):.3f}" if dur else "unknown",
            )

    def rel(self, t_abs: Fraction) -> float:
        return float(t_abs - (self.origin or 0))


# --------------------------------------------------------------------------------------------------
# Decoding loop
# --------------------------------------------------------------------------------------------------


@dataclass
class _DecodeStats:
    frames: int = 0
    packet_errors: int = 0
    first_error: str = ""
    stopped_early: str = ""
    dropped_out_of_order: int = 0
    #: Keyframe mode: packets not decoded (the inside of short GOPs), GOPs kept to their keyframe,
    #: leading frames of a decoded GOP dropped because they referred to a skipped one.
    skipped_packets: int = 0
    keyframe_gops: int = 0
    dropped_leading: int = 0
    #: Keyframe mode: the highest packet end (pts + duration, stream ticks) demuxed, i.e. where the
    #: video really ends although its last decoded frame may be a keyframe seconds earlier.
    end_ticks: int | None = None
    #: Keyframe mode: frames before this pts that are not keyframes are dropped (the leading
    #: B-frames of an open GOP whose references were skipped).
    floor_pts: int | None = None


def _packets(container: Any, stream: Any, stats: _DecodeStats) -> Iterator[Any]:
    """The stream's packets (end-of-stream markers left out); a demuxer failure ends them."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except _FFMPEG_ERRORS as exc:
            stats.stopped_early = f"reading the file failed ({_describe(exc)})"
            return
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # demuxer's end-of-stream marker; the decoder is flushed by the caller
        yield packet


def _keyframe_packets(packets: Iterator[Any], stream: Any, stats: _DecodeStats, gop: float) -> Iterator[Any]:
    """Keyframe mode: a GOP (keyframe to next keyframe) no longer than ``gop`` seconds is sent to
    the decoder as its keyframe alone; a longer one is decoded whole.

    At most ``gop`` seconds of compressed packets are held back while a GOP's length is unknown,
    so memory stays bounded on any stream. Packets before the first flagged keyframe, and files
    without timestamps, are decoded whole.
    """
    tb = stream.time_base
    if not tb or gop <= 0:
        yield from packets
        return
    limit = int(Fraction(gop) / Fraction(tb))
    pending: list[Any] = []
    key_pts = 0
    prev_skipped = False
    for packet in packets:
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            stats.end_ticks = end if stats.end_ticks is None else max(stats.end_ticks, end)
        if packet.is_keyframe and packet.pts is not None:
            if pending:  # the previous GOP ended within the limit: its keyframe stands for it
                yield pending[0]
                stats.skipped_packets += len(pending) - 1
                stats.keyframe_gops += 1
            prev_skipped = bool(pending)
            pending = [packet]
            key_pts = packet.pts
            continue
        if not pending:
            yield packet  # before the first keyframe, or inside a long GOP
            continue
        pending.append(packet)
        if packet.pts is not None and packet.pts - key_pts > limit:  # a long GOP: decode all of it
            if prev_skipped:
                stats.floor_pts = key_pts
            yield from pending
            pending = []
    if pending:  # the last GOP, short up to the end of the file
        yield pending[0]
        stats.skipped_packets += len(pending) - 1
        stats.keyframe_gops += 1


def _decoded_frames(
    name: str, container: Any, stream: Any, stats: _DecodeStats, *, keyframe_gop: float = 0.0
) -> Iterator[av.VideoFrame]:
    """Decode the video stream packet by packet, surviving corrupt packets.

    A packet that fails to decode is skipped (counted in ``stats``); decoding stops after
    ``_MAX_CONSECUTIVE_ERRORS`` consecutive failures or when the demuxer itself fails (truncated
    file), after flushing the decoder so frames already decoded are not lost. With
    ``keyframe_gop > 0`` only the keyframes of GOPs up to that many seconds long are decoded
    (:func:`_keyframe_packets`).
    """
    consecutive = 0
    packets = _packets(container, stream, stats)
    if keyframe_gop > 0:
        packets = _keyframe_packets(packets, stream, stats, keyframe_gop)
    for packet in packets:
        try:
            frames = stream.decode(packet)
        except _FFMPEG_ERRORS as exc:
            stats.packet_errors += 1
            consecutive += 1
            if not stats.first_error:
                stats.first_error = _describe(exc)
            if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                stats.stopped_early = f"{consecutive} packets in a row failed to decode"
                break
            continue
        consecutive = 0
        yield from _kept(frames, stats)
    try:
        frames = stream.decode(None)
    except _FFMPEG_ERRORS as exc:
        stats.packet_errors += 1
        if not stats.first_error:
            stats.first_error = _describe(exc)
        frames = []
    yield from _kept(frames, stats)


def _kept(frames: list[av.VideoFrame], stats: _DecodeStats) -> Iterator[av.VideoFrame]:
    """``frames`` less the leading frames of a GOP whose references were skipped (keyframe mode)."""
    for frame in frames:
        if (
            stats.floor_pts is not None
            and frame.pts is not None
            and frame.pts < stats.floor_pts
            and not frame.key_frame
        ):
            stats.dropped_leading += 1
            continue
        stats.frames += 1
        yield frame


def _configure_decoder(stream: Any, *, threads: int, skip_nonref: bool, skip_loop_filter: bool = False) -> None:
    stream.thread_type = "AUTO"
    if threads > 0:
        stream.codec_context.thread_count = threads
    if skip_nonref:
        stream.codec_context.skip_frame = "NONREF"
    if skip_loop_filter:  # applied when the decoder opens, at the first packet
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}


def _declared_duration(container: Any, stream: Any) -> float | None:
    """Duration the file claims for the video (the stream's, else the container's when the video
    is its only stream), seconds; None when unknown."""
    try:
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration and len(container.streams) == 1:
            return float(container.duration) / av.time_base
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def _report_problems(name: str, stats: _DecodeStats, last_t: float | None) -> None:
    if stats.frames == 0:
        detail = ""
        if stats.packet_errors:
            detail = f" ({stats.packet_errors} packets failed to decode: {stats.first_error})"
        elif stats.stopped_early:
            detail = f" ({stats.stopped_early})"
        raise DecodeError(
            name,
            f"no decodable video frames{detail}; the file is corrupt, truncated or empty of video",
        )
    if stats.packet_errors or stats.stopped_early:
        parts = []
        if stats.packet_errors:
            parts.append(f"{stats.packet_errors} packets failed to decode ({stats.first_error})")
        if stats.stopped_early:
            parts.append(stats.stopped_early)
        where = f" (up to t={last_t:.3f}s)" if last_t is not None else ""
        _LOG.warning(
            "%s: the file is corrupt or truncated: %s; keeping the %d frames decoded before the damage%s",
            name,
            "; ".join(parts),
            stats.frames,
            where,
        )
    if stats.dropped_out_of_order:
        _LOG.info(
            "%s: dropped %d frames whose timestamp did not increase",
            name,
            stats.dropped_out_of_order,
        )


# --------------------------------------------------------------------------------------------------
# Public: probe
# --------------------------------------------------------------------------------------------------


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video without decoding all of it.

    Decodes the first frame (to learn the display rotation, which PyAV exposes only on frames, and
    to make sure the video is decodable). ``duration`` comes from the stream's duration, else the
    container's, else a scan of all packets (raw elementary streams), else a full decode.
    ``width``/``height`` are the display size, i.e. the size :func:`iter_frames` yields with
    ``size=None``: anamorphic pixels stretched to their display aspect, then rotation applied.
    ``rotation`` is in degrees counter-clockwise as ffprobe reports it (-90, 0, 90 or 180).

    Raises :class:`DecodeError` for anything that is not a readable video.
    """
    with _open_video(path) as (name, container, stream):
        try:
            return _probe_open(name, container, stream)
        except DecodeError:
            raise
        except (*_FFMPEG_ERRORS, MemoryError) as exc:
            raise DecodeError(name, f"cannot be read ({_describe(exc)}); the file is corrupt") from exc


def _probe_open(name: str, container: Any, stream: Any) -> VideoInfo:
    _configure_decoder(stream, threads=0, skip_nonref=False)
    stats = _DecodeStats()
    first = next(_decoded_frames(name, container, stream, stats), None)
    if first is None:
        _report_problems(name, stats, None)
        raise DecodeError(name, "no decodable video frames")  # pragma: no cover - safety net
    check_frame_size(name, first.width, first.height)
    orient = _frame_orientation(first)
    height, width = _display_size(first.width, first.height, _sample_aspect_ratio(stream), orient)

    duration: float | None = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    n_frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
    counted: int | None = None
    if not duration or duration <= 0:
        duration, counted = _scan_duration(name)
        if n_frames is None and counted:
            n_frames = counted

    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate and rate > 0 else None
    if counted and duration and duration > 0:  # raw stream: the demuxer's rate is a guess
        fps = counted / duration
    return VideoInfo(
        path=name,
        duration=max(0.0, float(duration)),
        width=width,
        height=height,
        rotation=orient.rotation,
        fps=fps,
        codec=stream.codec_context.name or "",
        container=container.format.name or "",
        n_frames=n_frames,
    )


def _scan_duration(name: str) -> tuple[float, int | None]:
    """Last resort: measure the duration by reading all packets (no decoding), else by decoding.

    Returns ``(duration, frame_count_or_None)``.
    """
    with _open_video(name) as (_, container, stream):
        measured = _scan_packets(container, stream)
    if measured is not None:
        return measured
    with _open_video(name) as (_, container, stream):
        clock = _Clock(name, stream)
        stats = _DecodeStats()
        end = 0.0
        for frame in _decoded_frames(name, container, stream, stats):
            t = clock.time(frame)
            end = max(end, clock.rel(t) + float(clock.last_dur or 0))
        return end, stats.frames or None


def _scan_packets(container: Any, stream: Any) -> tuple[float, int | None] | None:
    lo: Fraction | None = None
    hi: Fraction | None = None
    total = Fraction(0)
    count = 0
    tb = stream.time_base
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            ptb = packet.time_base or tb
            dur = Fraction(packet.duration) * Fraction(ptb) if packet.duration and ptb else Fraction(0)
            total += dur
            if packet.pts is not None and ptb:
                start = Fraction(packet.pts) * Fraction(ptb)
                lo = start if lo is None else min(lo, start)
                hi = start + dur if hi is None else max(hi, start + dur)
    except _FFMPEG_ERRORS:
        pass
    if lo is not None and hi is not None and hi > lo:
        return float(hi - lo), None
    if total > 0:
        return float(total), count
    return None


# --------------------------------------------------------------------------------------------------
# Public: iter_frames
# --------------------------------------------------------------------------------------------------


def _validate_sampling(
    fps: float, size: tuple[int, int] | None, start: float, max_frames: int | None, threads: int
) -> tuple[float, tuple[int, int] | None]:
    try:
        fps_f = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"fps must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(fps_f) or fps_f <= 0:
        raise UsageError(f"fps must be a positive finite number of frames per second, got {fps!r}")
    if size is not None:
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
        ):
            raise UsageError(f"size must be (height, width) as two integers or None, got {size!r}")
        h, w = int(size[0]), int(size[1])
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise UsageError(f"size sides must be between 1 and {MAX_SIDE} pixels, got {size!r}")
        size = (h, w)
    if not isinstance(start, (int, float)) or not math.isfinite(start) or start < 0:
        raise UsageError(f"start must be a finite number of seconds >= 0, got {start!r}")
    if max_frames is not None and (
        not isinstance(max_frames, (int, np.integer)) or isinstance(max_frames, bool) or max_frames < 0
    ):
        raise UsageError(f"max_frames must be None or an integer >= 0, got {max_frames!r}")
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 0:
        raise UsageError(f"threads must be an integer >= 0 (0 = FFmpeg's default), got {threads!r}")
    return fps_f, size


def iter_frames(
    path: str | os.PathLike[str],
    *,
    fps: float = 1.0,
    size: tuple[int, int] | None = (224, 224),
    start: float = 0.0,
    max_frames: int | None = None,
    skip_nonref: bool = False,
    threads: int = 0,
    keyframe_gop: float = 0.0,
    skip_loop_filter: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream a video and yield ``(t, rgb)`` for frames sampled ``fps`` times per second.

    Sampling is by presentation time: for each target ``t_k = start + k / fps`` the frame *on
    screen* at ``t_k`` is yielded, i.e. the last frame whose time is ``<= t_k`` (a frame is on
    screen from its own time until the next frame's, the last one for its declared duration).
    A frame is yielded at most once, at its own time, so when ``fps`` exceeds the video's rate
    every frame is yielded once; variable frame rate needs nothing special.

    ``t`` is the frame's presentation time in seconds relative to the first frame of the video
    (from its ``pts``; see :class:`_Clock` for streams without timestamps), strictly increasing.
    ``rgb`` is ``uint8 [H, W, 3]`` in display orientation (rotation metadata applied). With
    ``size=(H, W)`` the frame is squashed to exactly that size by FFmpeg's swscale (bilinear); with
    ``size=None`` it keeps its display size (anamorphic pixels stretched to their display aspect;
    every frame is scaled to the first frame's display size should the resolution change).

    ``start`` skips to that time (seeking when the container allows it); ``max_frames`` stops after
    that many frames; ``skip_nonref`` lets the decoder skip non-reference frames (faster, the
    sampled frame may then be a neighbour of the exact one); ``threads`` is the codec's thread
    count (0 = FFmpeg's default). ``skip_loop_filter`` has the decoder skip its deblocking (loop)
    filter (FFmpeg ``skip_loop_filter=all``; H.264/HEVC): ~20 % less decoding work, at the price of
    blockier frames whose error grows along each GOP (the filtered frames are the references of the
    next ones) — for references in the fast mode, never for queries.

    ``keyframe_gop > 0`` is the fast mode for references: a GOP (keyframe to next keyframe) no
    longer than that many seconds is decoded as its keyframe alone, which then stands for the
    whole GOP; longer GOPs are decoded as usual. On streams with short GOPs (1-2 s, what
    platforms and phones write) this decodes a few percent of the frames; the samples are then
    the keyframes (at their own times), so gaps of up to ``keyframe_gop`` seconds appear between
    them. In this mode each target takes the decoded frame *nearest* to it rather than the one on
    screen, so that no keyframe is lost when the GOP is a little longer than ``1 / fps`` (every
    keyframe is kept while GOPs are at least that long; shorter GOPs are thinned to ``fps``).
    Queries should be sampled exactly (0).

    Memory stays bounded whatever the length: at most one decoded frame is held back.

    A corrupt or truncated file yields the frames decoded before the damage and ends with a
    warning logged; :class:`DecodeError` is raised when the file is not a readable video, has no
    decodable frame, or a frame size is outside :func:`check_frame_size` limits. Argument errors
    raise :class:`vmatch.errors.UsageError` immediately; file errors are raised on iteration.
    """
    fps_f, size_hw = _validate_sampling(fps, size, start, max_frames, threads)
    gop = check_keyframe_gop(keyframe_gop)
    return _iter_frames(
        path,
        fps=fps_f,
        size=size_hw,
        start=float(start),
        max_frames=None if max_frames is None else int(max_frames),
        skip_nonref=bool(skip_nonref),
        threads=int(threads),
        keyframe_gop=gop,
        skip_loop_filter=bool(skip_loop_filter),
    )


def check_keyframe_gop(keyframe_gop: Any) -> float:
    """``keyframe_gop`` as a float, or :class:`UsageError` (a finite number of seconds >= 0)."""
    if isinstance(keyframe_gop, bool) or not isinstance(keyframe_gop, (int, float, np.integer, np.floating)):
        raise UsageError(f"keyframe_gop must be a number of seconds >= 0 (0 = off), got {keyframe_gop!r}")
    gop = float(keyframe_gop)
    if not math.isfinite(gop) or gop < 0:
        raise UsageError(f"keyframe_gop must be a finite number of seconds >= 0 (0 = off), got {keyframe_gop!r}")
    return gop


def _iter_frames(
    path: str | os.PathLike[str],
    *,
    fps: float,
    size: tuple[int, int] | None,
    start: float,
    max_frames: int | None,
    skip_nonref: bool,
    threads: int,
    keyframe_gop: float = 0.0,
    skip_loop_filter: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    if max_frames == 0:
        _check_file(path)
        return
    with _open_video(path) as (name, container, stream):
        try:
            yield from _sample(
                name,
                container,
                stream,
                fps=fps,
                size=size,
                start=start,
                max_frames=max_frames,
                skip_nonref=skip_nonref,
                threads=threads,
                keyframe_gop=keyframe_gop,
                skip_loop_filter=skip_loop_filter,
            )
        except DecodeError:
            raise
        except (*_FFMPEG_ERRORS, MemoryError) as exc:
            raise DecodeError(name, f"decoding failed ({_describe(exc)}); the file is corrupt") from exc


class _Converter:
    """Reformats sampled frames to RGB at the output size and applies the orientation."""

    def __init__(self, name: str, stream: Any, first: av.VideoFrame, size: tuple[int, int] | None):
        self.name = name
        self.orient = _frame_orientation(first)
        self.reformatter = VideoReformatter()
        if size is None:
            out_h, out_w = _display_size(
                first.width, first.height, _sample_aspect_ratio(stream), self.orient
            )
        else:
            out_h, out_w = size
        # Size before orientation: swapped when the orientation transposes the image.
        self.pre_h, self.pre_w = (out_w, out_h) if self.orient.transpose else (out_h, out_w)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        check_frame_size(self.name, frame.width, frame.height)
        rgb_frame = self.reformatter.reformat(
            frame, width=self.pre_w, height=self.pre_h, format="rgb24"
        )
        rgb = rgb_frame.to_ndarray()
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:  # pragma: no cover
            raise DecodeError(self.name, f"unexpected RGB frame of shape {rgb.shape} {rgb.dtype}")
        return self.orient.apply(rgb)


def _sample(
    name: str,
    container: Any,
    stream: Any,
    *,
    fps: float,
    size: tuple[int, int] | None,
    start: float,
    max_frames: int | None,
    skip_nonref: bool,
    threads: int,
    keyframe_gop: float = 0.0,
    skip_loop_filter: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    _configure_decoder(stream, threads=threads, skip_nonref=skip_nonref, skip_loop_filter=skip_loop_filter)
    clock = _Clock(name, stream)
    stats = _DecodeStats()
    frames = _decoded_frames(name, container, stream, stats, keyframe_gop=keyframe_gop)

    first = next(frames, None)
    if first is None:
        _report_problems(name, stats, None)
        return
    check_frame_size(name, first.width, first.height)
    convert = _Converter(name, stream, first, size)
    first_abs = clock.time(first)

    declared = _declared_duration(container, stream)
    if start > 0 and first.pts is not None and stream.time_base:
        seek_to = first_abs + Fraction(start)
        try:
            container.seek(
                int(seek_to / Fraction(stream.time_base)),
                stream=stream,
                backward=True,
                any_frame=False,
            )
        except _FFMPEG_ERRORS as exc:
            _LOG.debug("%s: seek to %.3fs failed (%s); decoding from the start", name, start, exc)
        else:
            frames = _decoded_frames(name, container, stream, stats, keyframe_gop=keyframe_gop)
            first = next(frames, None)
            if first is None:  # nothing at or after the seek point: start is past the end
                return
            clock.reset()
            first_abs = clock.time(first)

    yielded = 0
    k = 0
    target = start
    prev: av.VideoFrame = first
    prev_t = clock.rel(first_abs)
    prev_dur: float | None = float(clock.last_dur) if clock.last_dur else None
    last_gap: float | None = None

    def advance_past(t: float) -> None:
        """Move the target to the first k with start + k/fps >= t (within _EPS)."""
        nonlocal k, target
        kk = max(k, math.ceil((t - start) * fps - 1e-9))
        while start + kk / fps < t - _EPS:
            kk += 1
        while kk > k and start + (kk - 1) / fps >= t - _EPS:
            kk -= 1
        k = kk
        target = start + k / fps

    # Keyframe mode: each keyframe serves the targets nearer to it than to its neighbours (the
    # keyframe stands for its GOP only approximately, and "on screen at the target" would drop a
    # keyframe whenever the GOP is a little longer than the sampling step).
    nearest = keyframe_gop > 0
    if target < prev_t - _EPS and not nearest:  # nothing on screen before the first frame we have
        advance_past(prev_t)
    for frame in frames:
        t = clock.rel(clock.time(frame))
        if t <= prev_t + _EPS:
            stats.dropped_out_of_order += 1
            continue
        serves_until = 0.5 * (prev_t + t) if nearest else t
        if (nearest or prev_t - _EPS <= target) and target < serves_until - _EPS:
            yield prev_t, convert(prev)
            yielded += 1
            if max_frames is not None and yielded >= max_frames:
                return
        if target < serves_until - _EPS:
            advance_past(serves_until)
        last_gap = t - prev_t
        prev, prev_t = frame, t
        prev_dur = float(clock.last_dur) if clock.last_dur else None

    # The last frame is on screen for its declared duration (else the last frame interval).
    end_dur = prev_dur if prev_dur else (last_gap if last_gap else 0.0)
    if stats.keyframe_gops and stats.end_ticks is not None and stream.time_base:
        # Keyframe mode: a last keyframe standing for its GOP is on screen until the packets end.
        end_dur = max(end_dur, clock.rel(Fraction(stats.end_ticks) * Fraction(stream.time_base)) - prev_t)
    if (nearest or prev_t - _EPS <= target) and target < prev_t + end_dur - _EPS or (
        end_dur == 0.0 and abs(target - prev_t) <= _EPS
    ):
        yield prev_t, convert(prev)
    end_t = prev_t + end_dur
    if declared is not None and end_t < 0.9 * declared - 0.5 and not stats.stopped_early:
        stats.stopped_early = (
            f"the video stops at {end_t:.3f}s although the file declares {declared:.3f}s"
        )
    if clock.used_dts:
        _LOG.info(
            "%s: %d frames timed by their decoding timestamp (the file's pts are out of order)",
            name,
            clock.used_dts,
        )
    _report_problems(name, stats, prev_t)
