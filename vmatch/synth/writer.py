"""Writing synthetic media to files with PyAV: :func:`write_video` (any encoder of the wheel,
constant or variable frame rate, rotation metadata, anamorphic pixels) and :func:`write_audio`
(an audio-only sine tone)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.checks import _check_fps, _check_positive_int

# Containers whose muxer stores display-matrix rotation (checked with PyAV 18 / FFmpeg 8).
_ROTATION_FORMATS = {"mp4", "mov", "matroska", "webm", "ipod", "3gp", "3g2"}
# Codecs that cannot encode odd frame sizes in chroma-subsampled formats.
_EVEN_ONLY_CODECS = {"libx264", "libx265", "h264_nvenc", "hevc_nvenc"}
_SUBSAMPLED = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "nv12", "nv21"}
# Codecs without a constant-quality mode that get a generous default bitrate.
_BITRATE_CODECS = {"mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p", "flv", "mjpeg", "mpeg1video",
                   "mpeg2video"}  # fmt: skip
_SHORT_TIMEBASE_CODECS = {"mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p", "flv"}
_FORMAT_BY_EXT = {
    ".264": "h264",
    ".h264": "h264",
    ".265": "hevc",
    ".h265": "hevc",
    ".hevc": "hevc",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".y4m": "yuv4mpegpipe",
}


def _default_pix_fmt(codec: str) -> str:
    if codec == "gif":
        return "rgb8"
    if codec in ("png", "apng", "libx264rgb"):
        return "rgb24"
    return "yuv420p"


def _as_frame_iter(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4:
            raise UsageError(f"frames must be [N, H, W, 3] uint8, got shape {frames.shape}")
        return iter(frames)
    return iter(frames)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    fps: int | float | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    crf: int | None = None,
    bitrate: int | None = None,
    preset: str | None = None,
    gop: int | None = None,
    container_format: str | None = None,
    codec_options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
    rotation: int = 0,
    vfr_timestamps: Sequence[float] | None = None,
    sample_aspect_ratio: Fraction | None = None,
) -> Path:
    """Encode RGB frames (``[N, H, W, 3]`` uint8 array or an iterable of ``[H, W, 3]``) to ``path``.

    ``fps`` is the frame rate (``Fraction(30000, 1001)`` for NTSC rates). ``codec`` is any PyAV
    encoder (``av.codecs_available``): ``libx264`` (default), ``libx265``, ``mpeg4``, ``libvpx``,
    ``libvpx-vp9``, ``gif``, ``ffv1``, ``mjpeg``, ``rawvideo``... The container comes from the
    file extension (``.264``/``.h264`` give a raw H.264 elementary stream, ``.ts`` MPEG-TS) or
    ``container_format``; ``container_options`` are muxer options (e.g.
    ``{"movflags": "+faststart"}``), ``codec_options`` encoder options.

    ``pix_fmt`` defaults to ``yuv420p`` (``rgb8`` for gif). libx264/libx265 cannot encode odd
    widths or heights in 4:2:0; for odd sizes the default becomes ``yuv444p`` (High 4:4:4 profile,
    decoded fine by FFmpeg); mpeg4, libvpx, libvpx-vp9 and ffv1 accept odd sizes in yuv420p.
    ``crf`` (x264/x265/vpx quality), ``bitrate`` (bits/s; codecs without a crf mode such as mpeg4
    default to ``max(2 Mb/s, 0.3 bit per pixel)`` instead of FFmpeg's blurry 200 kb/s),
    ``preset`` (x264/x265; default ``veryfast`` to keep tests quick) and ``gop`` (keyframe
    interval) are optional.

    ``rotation`` writes display-matrix rotation metadata, in degrees counter-clockwise as ffprobe
    and :attr:`av.VideoFrame.rotation` report it (players then rotate the stored frames by that):
    a multiple of 90, supported for mp4/mov/mkv/webm (PyAV's ``VideoStream.set_display_rotation``;
    other muxers would silently drop it, so they are refused).

    ``vfr_timestamps`` gives an explicit presentation time in seconds for every frame (strictly
    increasing, as many as frames), making a variable-frame-rate file; B-frames are disabled so
    that containers store exact times; ``fps`` then only sets the duration of the last frame
    (``1 / fps``). Precision is that of the container (1 ms for mkv/webm and for
    mpeg4-part-2 codecs, 10 ms for gif, 1/90000 s otherwise).

    ``sample_aspect_ratio`` (e.g. ``Fraction(2, 1)``) marks the pixels as anamorphic (stored in
    the codec header; players stretch the width by that factor).

    Returns the path written. Raises :class:`UsageError` for bad arguments or when FFmpeg refuses
    the settings.
    """
    out = Path(path)
    rate = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
    if rate <= 0:
        raise UsageError(f"{out}: fps must be positive, got {fps!r}")
    if codec not in av.codecs_available:
        raise UsageError(f"{out}: codec {codec!r} is not available in this PyAV build")
    if rotation % 90 != 0:
        raise UsageError(f"{out}: rotation must be a multiple of 90 degrees, got {rotation!r}")
    fmt = container_format or _FORMAT_BY_EXT.get(out.suffix.lower())
    times: list[float] | None = None
    if vfr_timestamps is not None:
        times = [float(t) for t in vfr_timestamps]
        if any(not math.isfinite(t) for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            raise UsageError(f"{out}: vfr_timestamps must be finite and strictly increasing")
        if times and times[0] < 0:
            raise UsageError(f"{out}: vfr_timestamps must be >= 0")

    if times is not None and fmt in ("h264", "hevc"):
        raise UsageError(
            f"{out}: a raw {fmt} elementary stream stores no timestamps, so it cannot be "
            "variable frame rate; use .mp4, .mkv, .webm, .mov or .ts"
        )

    it = _as_frame_iter(frames)
    first = next(it, None)
    if first is None:
        raise UsageError(f"{out}: no frames to write (a video needs at least one frame)")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise UsageError(
            f"{out}: frames must be uint8 [H, W, 3] RGB, got {first.dtype} {first.shape}"
        )
    height, width = int(first.shape[0]), int(first.shape[1])
    if pix_fmt is None:
        pix_fmt = _default_pix_fmt(codec)
        if codec in _EVEN_ONLY_CODECS and (width % 2 or height % 2) and pix_fmt in _SUBSAMPLED:
            pix_fmt = "yuv444p"

    options: dict[str, str] = {}
    if codec in ("libx264", "libx265", "libx264rgb"):
        options["preset"] = preset or "veryfast"
    elif preset is not None:
        options["preset"] = preset
    if codec in ("libvpx", "libvpx-vp9"):
        options.update({"deadline": "realtime", "cpu-used": "8"})
        if crf is not None and bitrate is None:
            options["b"] = "0"
    if crf is not None:
        options["crf"] = str(int(crf))
    if times is not None and codec in ("libx264", "libx265", "libx264rgb"):
        options["bf"] = "0"
        if codec == "libx265":
            options["x265-params"] = "bframes=0:log-level=error"
    if codec == "libx265" and "x265-params" not in options:
        options["x265-params"] = "log-level=error"
    options.update(dict(codec_options or {}))

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        container = av.open(str(out), mode="w", format=fmt, options=dict(container_options or {}))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UsageError(f"{out}: cannot create the video file ({exc})") from exc
    try:
        try:
            stream = container.add_stream(codec, rate=rate, options=options)
            stream.width = width
            stream.height = height
            stream.pix_fmt = pix_fmt
            if bitrate is not None:
                stream.codec_context.bit_rate = int(bitrate)
            elif codec in _BITRATE_CODECS:  # no crf: FFmpeg's default 200 kb/s is blurry
                stream.codec_context.bit_rate = max(
                    2_000_000, int(width * height * float(rate) * 0.3)
                )
            if gop is not None:
                stream.codec_context.gop_size = int(gop)
            if sample_aspect_ratio is not None:
                stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
            if times is None:
                time_base = Fraction(1) / rate
            elif codec in _SHORT_TIMEBASE_CODECS:
                time_base = Fraction(1, 1000)  # their time base denominator is 16-bit
            else:
                time_base = Fraction(1, 90000)
            stream.codec_context.time_base = time_base
            if rotation % 360:
                cname = container.format.name
                if not set(cname.split(",")) & _ROTATION_FORMATS:
                    raise UsageError(
                        f"{out}: the {cname} container cannot store rotation metadata; "
                        "use .mp4, .mov, .mkv or .webm"
                    )
                deg = ((rotation + 180) % 360) - 180
                stream.set_display_rotation(float(deg))
            n = 0
            frame_iter = _chain_first(first, it)
            for arr in frame_iter:
                arr = np.asarray(arr)
                if arr.shape != first.shape or arr.dtype != np.uint8:
                    raise UsageError(
                        f"{out}: frame {n} is {arr.dtype} {arr.shape}, expected uint8 {first.shape}"
                    )
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                if times is not None:
                    if n >= len(times):
                        raise UsageError(
                            f"{out}: more frames than vfr_timestamps ({len(times)})"
                        )
                    vf.pts = int(round(times[n] / time_base))
                    dur = times[n + 1] - times[n] if n + 1 < len(times) else float(1 / rate)
                    vf.duration = max(1, int(round(dur / time_base)))
                else:
                    vf.pts = n
                    vf.duration = 1
                vf.time_base = time_base
                for packet in stream.encode(vf):
                    container.mux(packet)
                n += 1
            if times is not None and n != len(times):
                raise UsageError(
                    f"{out}: {n} frames but {len(times)} vfr_timestamps; give one time per frame"
                )
            for packet in stream.encode(None):
                container.mux(packet)
        except UsageError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise UsageError(
                f"{out}: FFmpeg refused to encode {width}x{height} {pix_fmt} with {codec} "
                f"({exc}); try another codec/pix_fmt (odd sizes: yuv444p, mpeg4 or ffv1)"
            ) from exc
    except BaseException:
        try:
            container.close()
        finally:
            out.unlink(missing_ok=True)
        raise
    container.close()
    return out


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_audio(
    path: str | os.PathLike[str],
    *,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    codec: str = "aac",
    frequency: float = 440.0,
) -> Path:
    """Write an audio-only file (a sine tone): e.g. ``.m4a`` with aac or ``.wav`` with pcm_s16le.

    Useful to check that audio-only input is refused by the video decoder.
    """
    out = Path(path)
    seconds = _check_fps(seconds, "seconds")
    sample_rate = _check_positive_int("sample_rate", sample_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(out), mode="w")
    try:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        ctx_fmt = stream.codec_context.format
        fmt_name = ctx_fmt.name if ctx_fmt is not None else "fltp"
        n_total = int(round(seconds * sample_rate))
        chunk = stream.codec_context.frame_size or 1024
        pos = 0
        while pos < n_total:
            n = min(chunk, n_total - pos)
            t = (np.arange(pos, pos + n) / sample_rate).astype(np.float64)
            wave = 0.3 * np.sin(2 * np.pi * frequency * t)
            if fmt_name.startswith("s16"):
                data = (wave * 32767).astype(np.int16)[None, :]
            elif fmt_name.startswith("s32"):
                data = (wave * 2147483647).astype(np.int32)[None, :]
            else:
                data = wave.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=fmt_name, layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pos
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            pos += n
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return out
