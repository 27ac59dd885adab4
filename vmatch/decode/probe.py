"""Probing: what a video is (display size, rotation, duration, rate, codec) without decoding all of it,
the duration measured from its packets when the file declares none.

Where it sits: **decode**; :func:`probe` returns a :class:`vmatch.types.VideoInfo`.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any

import av

from vmatch.decode.clock import Clock
from vmatch.decode.container import open_video
from vmatch.decode.decoder import DecodeStats, configure_decoder, decoded_frames, report_problems
from vmatch.decode.limits import FFMPEG_ERRORS, check_frame_size, ffmpeg_failures
from vmatch.decode.orientation import display_size, frame_orientation, sample_aspect_ratio
from vmatch.errors import DecodeError
from vmatch.types import VideoInfo


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
    with open_video(path) as (name, container, stream), ffmpeg_failures(name, "cannot be read"):
        return _probe_open(name, container, stream)


def _probe_open(name: str, container: Any, stream: Any) -> VideoInfo:
    configure_decoder(stream, threads=0, skip_nonref=False)
    stats = DecodeStats()
    first = next(decoded_frames(name, container, stream, stats), None)
    if first is None:
        report_problems(name, stats, None)
        raise DecodeError(name, "no decodable video frames")  # pragma: no cover - safety net
    check_frame_size(name, first.width, first.height)
    orient = frame_orientation(first)
    height, width = display_size(first.width, first.height, sample_aspect_ratio(stream), orient)

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
    with open_video(name) as (_, container, stream):
        measured = _scan_packets(container, stream)
    if measured is not None:
        return measured
    with open_video(name) as (_, container, stream):
        clock = Clock(name, stream)
        stats = DecodeStats()
        end = 0.0
        for frame in decoded_frames(name, container, stream, stats):
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
    except FFMPEG_ERRORS:
        pass
    if lo is not None and hi is not None and hi > lo:
        return float(hi - lo), None
    if total > 0:
        return float(total), count
    return None
