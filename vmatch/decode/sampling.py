"""Fixed-rate sampling by presentation time: :func:`iter_frames` streams ``(t, rgb)`` for the frame on
screen at each target time (or the nearest keyframe in the keyframe mode), converted to RGB at the
output size in display orientation, with at most one decoded frame of look-ahead.

Where it sits: **decode**, what :mod:`vmatch.sample` reads frames through.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vmatch.decode.clock import Clock
from vmatch.decode.container import open_video
from vmatch.decode.decoder import DecodeStats, configure_decoder, declared_duration, decoded_frames, report_problems
from vmatch.decode.inputs import check_file
from vmatch.decode.limits import FFMPEG_ERRORS, MAX_SIDE, check_frame_size, ffmpeg_failures
from vmatch.decode.orientation import display_size, frame_orientation, sample_aspect_ratio
from vmatch.errors import DecodeError, UsageError
from vmatch.options import check_keyframe_gop, DEFAULT_FPS

_LOG = logging.getLogger(__name__)

# Two timestamps closer than this (seconds) are considered equal when sampling.
_EPS = 1e-6


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
    fps: float = DEFAULT_FPS,
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
    (from its ``pts``; see :class:`Clock` for streams without timestamps), strictly increasing.
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
    request = _Sampling(
        fps=fps_f,
        size=size_hw,
        start=float(start),
        max_frames=None if max_frames is None else int(max_frames),
        skip_nonref=bool(skip_nonref),
        threads=int(threads),
        keyframe_gop=gop,
        skip_loop_filter=bool(skip_loop_filter),
    )
    return _iter_frames(path, request)


@dataclass(frozen=True)
class _Sampling:
    """A checked :func:`iter_frames` request (the meaning of each field is said there)."""

    fps: float
    size: tuple[int, int] | None
    start: float
    max_frames: int | None
    skip_nonref: bool
    threads: int
    keyframe_gop: float
    skip_loop_filter: bool


def _iter_frames(path: str | os.PathLike[str], request: _Sampling) -> Iterator[tuple[float, np.ndarray]]:
    if request.max_frames == 0:
        check_file(path)
        return
    with open_video(path) as (name, container, stream), ffmpeg_failures(name, "decoding failed"):
        yield from _sample(name, container, stream, request)


class _Converter:
    """Reformats sampled frames to RGB at the output size and applies the orientation."""

    def __init__(self, name: str, stream: Any, first: av.VideoFrame, size: tuple[int, int] | None):
        self.name = name
        self.orient = frame_orientation(first)
        self.reformatter = VideoReformatter()
        if size is None:
            out_h, out_w = display_size(
                first.width, first.height, sample_aspect_ratio(stream), self.orient
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


def _sample(name: str, container: Any, stream: Any, request: _Sampling) -> Iterator[tuple[float, np.ndarray]]:
    fps, size, start, max_frames = request.fps, request.size, request.start, request.max_frames
    keyframe_gop = request.keyframe_gop
    configure_decoder(
        stream, threads=request.threads, skip_nonref=request.skip_nonref, skip_loop_filter=request.skip_loop_filter
    )
    clock = Clock(name, stream)
    stats = DecodeStats()
    frames = decoded_frames(name, container, stream, stats, keyframe_gop=keyframe_gop)

    first = next(frames, None)
    if first is None:
        report_problems(name, stats, None)
        return
    check_frame_size(name, first.width, first.height)
    convert = _Converter(name, stream, first, size)
    first_abs = clock.time(first)

    declared = declared_duration(container, stream)
    if start > 0 and first.pts is not None and stream.time_base:
        seek_to = first_abs + Fraction(start)
        try:
            container.seek(
                int(seek_to / Fraction(stream.time_base)),
                stream=stream,
                backward=True,
                any_frame=False,
            )
        except FFMPEG_ERRORS as exc:
            _LOG.debug("%s: seek to %.3fs failed (%s); decoding from the start", name, start, exc)
        else:
            frames = decoded_frames(name, container, stream, stats, keyframe_gop=keyframe_gop)
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
    report_problems(name, stats, prev_t)
