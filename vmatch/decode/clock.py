"""Presentation times of decoded frames: best-effort timestamps (pts, else dts), synthesised from the
declared frame rate for raw streams, in seconds relative to the first frame; never a frame counter.

Where it sits: **decode**; used by probing and by the sampling loop.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av

from vmatch.errors import DecodeError

_LOG = logging.getLogger(__name__)


class Clock:
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
