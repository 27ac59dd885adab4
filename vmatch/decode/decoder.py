"""The decoding loop: decoder configuration (threads, skipped frames, loop filter), packets to frames
surviving corrupt packets, the keyframe mode (a short GOP decoded as its keyframe alone), and the
warnings or errors a damaged file ends with.

Where it sits: **decode**, under probing and sampling.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from vmatch.decode.limits import FFMPEG_ERRORS, describe
from vmatch.errors import DecodeError

_LOG = logging.getLogger(__name__)

# Consecutive packets that fail to decode before the decoder gives up on a file.
_MAX_CONSECUTIVE_ERRORS = 200


@dataclass
class DecodeStats:
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


def _packets(container: Any, stream: Any, stats: DecodeStats) -> Iterator[Any]:
    """The stream's packets (end-of-stream markers left out); a demuxer failure ends them."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except FFMPEG_ERRORS as exc:
            stats.stopped_early = f"reading the file failed ({describe(exc)})"
            return
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # demuxer's end-of-stream marker; the decoder is flushed by the caller
        yield packet


def _keyframe_packets(packets: Iterator[Any], stream: Any, stats: DecodeStats, gop: float) -> Iterator[Any]:
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


def decoded_frames(
    name: str, container: Any, stream: Any, stats: DecodeStats, *, keyframe_gop: float = 0.0
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
        except FFMPEG_ERRORS as exc:
            stats.packet_errors += 1
            consecutive += 1
            if not stats.first_error:
                stats.first_error = describe(exc)
            if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                stats.stopped_early = f"{consecutive} packets in a row failed to decode"
                break
            continue
        consecutive = 0
        yield from _kept(frames, stats)
    try:
        frames = stream.decode(None)
    except FFMPEG_ERRORS as exc:
        stats.packet_errors += 1
        if not stats.first_error:
            stats.first_error = describe(exc)
        frames = []
    yield from _kept(frames, stats)


def _kept(frames: list[av.VideoFrame], stats: DecodeStats) -> Iterator[av.VideoFrame]:
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


def configure_decoder(stream: Any, *, threads: int, skip_nonref: bool, skip_loop_filter: bool = False) -> None:
    stream.thread_type = "AUTO"
    if threads > 0:
        stream.codec_context.thread_count = threads
    if skip_nonref:
        stream.codec_context.skip_frame = "NONREF"
    if skip_loop_filter:  # applied when the decoder opens, at the first packet
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}


def declared_duration(container: Any, stream: Any) -> float | None:
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


def report_problems(name: str, stats: DecodeStats, last_t: float | None) -> None:
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
