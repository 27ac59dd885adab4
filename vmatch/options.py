"""Options of an index run as records: how each file is decoded and sampled, and how the run goes.

:class:`DecodeOptions` says how the frames of one file are decoded and sampled (rate, keyframe
mode, decoder shortcuts, blank threshold, local features); :class:`IndexOptions` what an index run
does beside (vPDQ, chunks and queue of the executor, periodic saves). The thread counts of a run
are :class:`vmatch.threads.ThreadPolicy`. Both records check their values when made (UsageError),
so a stage that receives one needs no checks of its own. :data:`FAST_REFERENCE_MODE` is the fast
reference mode (``vmatch index --fast``) as one :class:`DecodeOptions`, with its precision rule
:func:`fast_mode_precision`; :data:`DEFAULT_FPS` the one default sampling rate.

Nothing heavy is imported here (no torch, av or faiss): the CLI reads these records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vmatch.errors import UsageError

#: Sampled frames per second when nobody says otherwise (indexing, matching, the service, Ray),
#: and the rate of the dense pass over a file whose sparse samples are all blank.
DEFAULT_FPS = 1.0

#: A frame whose pixel standard deviation (0-255 scale) is below this carries no content
#: (solid colour, fade to black): it is neither indexed nor searched.
BLANK_STD = 4.0

#: What ``keypoints=`` may ask for (:func:`vmatch.sample.local_extractor`): the frames and their
#: mirror images (a query), the frames alone (a reference), or no local features.
KEYPOINT_KINDS = ("query", "reference", "none")


def check_fps(fps: float) -> float:
    """``fps`` as a float, or :class:`UsageError` (a number of frames per second in (0, 120])."""
    try:
        f = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"sampling rate must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(f) or f <= 0 or f > 120:
        raise UsageError(f"sampling rate must be > 0 and <= 120 frames per second, got {fps}")
    return f


def check_keyframe_gop(keyframe_gop: Any) -> float:
    """``keyframe_gop`` as a float, or :class:`UsageError` (a finite number of seconds >= 0); the
    decoder's own check (:func:`vmatch.decode.check_keyframe_gop` is this function)."""
    import numpy as np

    if isinstance(keyframe_gop, bool) or not isinstance(keyframe_gop, (int, float, np.integer, np.floating)):
        raise UsageError(f"keyframe_gop must be a number of seconds >= 0 (0 = off), got {keyframe_gop!r}")
    gop = float(keyframe_gop)
    if not math.isfinite(gop) or gop < 0:
        raise UsageError(f"keyframe_gop must be a finite number of seconds >= 0 (0 = off), got {keyframe_gop!r}")
    return gop


def check_keypoints(keypoints: Any) -> str:
    """``keypoints`` if it is one of :data:`KEYPOINT_KINDS`, else :class:`UsageError`."""
    if keypoints not in KEYPOINT_KINDS:
        raise UsageError(f"keypoints must be one of {', '.join(KEYPOINT_KINDS)}, got {keypoints!r}")
    return keypoints


def _check_count(name: str, value: Any, *, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class DecodeOptions:
    """How the frames of one file are decoded and sampled (:func:`vmatch.sample.content_frames`).

    Attributes:
        fps: sampled frames per second (presentation-time based, in (0, 120]).
        keyframe_gop: the fast mode for references (:func:`vmatch.decode.iter_frames`): GOPs up to
            this many seconds are decoded as their keyframe alone (0: off, every sample exact).
        skip_nonref: the decoder skips non-reference frames (B-frames): faster, and a sampled
            frame may be a neighbour of the exact one (see benchmarks/RESULTS.md for what it costs).
        skip_loop_filter: the decoder skips its deblocking filter: faster decoding of references,
            slightly altered frames.
        blank_std: frames whose pixel standard deviation is smaller in every colour channel are
            dropped as blank (:func:`vmatch.sample.is_blank`).
        keypoints: the local features extracted with the frames (:func:`vmatch.sample.local_extractor`):
            ``"reference"`` stores each frame's, with which matches are verified (:mod:`vmatch.verify`);
            ``"none"`` none (matches against such a reference cannot be verified, hence are never
            reported: for cost comparisons only); ``"query"`` the frames and their mirror images.
    """

    fps: float = DEFAULT_FPS
    keyframe_gop: float = 0.0
    skip_nonref: bool = False
    skip_loop_filter: bool = False
    blank_std: float = BLANK_STD
    keypoints: str = "reference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", check_fps(self.fps))
        object.__setattr__(self, "keyframe_gop", check_keyframe_gop(self.keyframe_gop))
        object.__setattr__(self, "skip_nonref", bool(self.skip_nonref))
        object.__setattr__(self, "skip_loop_filter", bool(self.skip_loop_filter))
        check_keypoints(self.keypoints)

    def decoder_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`vmatch.decode.iter_frames` these options set (beside
        ``fps``, ``size`` and ``threads``)."""
        return {"skip_nonref": self.skip_nonref, "keyframe_gop": self.keyframe_gop,
                "skip_loop_filter": self.skip_loop_filter}

    @property
    def sparse(self) -> bool:
        """Whether sampling may miss content the default sampling sees: keyframe mode, or fewer
        than :data:`DEFAULT_FPS` frames a second (see the dense pass of :func:`vmatch.sample.content_frames`)."""
        return bool(self.keyframe_gop) or self.fps < DEFAULT_FPS

    def dense(self) -> DecodeOptions:
        """These options for the exact pass over a file whose sparse samples were all blank: every
        sample exact, at least :data:`DEFAULT_FPS` frames a second."""
        return dataclasses.replace(self, fps=max(self.fps, DEFAULT_FPS), keyframe_gop=0.0)


@dataclass(frozen=True)
class IndexOptions:
    """What an index run (:func:`vmatch.pipeline.index_videos`) does beside decoding and embedding.

    Attributes:
        vpdq: also hash every reference with vPDQ (a second, full-size decode).
        chunk_frames: frames a decode worker hands to the CNN at once (None: the CNN's batch size,
            16 at most; :mod:`vmatch.parallel`).
        queue_chunks: chunks the queue between the decode workers and the CNN holds (None: twice
            the workers, at least 4): with ``chunk_frames``, the bound on frames in memory.
        save_every: seconds between saves of the frame index during the run.
    """

    vpdq: bool = False
    chunk_frames: int | None = None
    queue_chunks: int | None = None
    save_every: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "vpdq", bool(self.vpdq))
        _check_count("chunk_frames", self.chunk_frames, low=1)
        _check_count("queue_chunks", self.queue_chunks, low=1)
        every = self.save_every
        if isinstance(every, bool) or not isinstance(every, (int, float)) or math.isnan(every) or every < 0:
            raise UsageError(f"save_every must be a number of seconds >= 0, got {every!r}")


#: The fast reference mode (``vmatch index --fast``): references sampled at 0.5 frame/s, GOPs up
#: to 2 s decoded as their keyframe, B-frames and the deblocking filter skipped; with the CNN in
#: bf16 where the CPU has it (:func:`fast_mode_precision`). Measured in benchmarks/RESULTS.md
#: (issue 7): pair µAP as the exact path's on two benchmark draws, located reference segments coarser.
FAST_REFERENCE_MODE = DecodeOptions(fps=0.5, keyframe_gop=2.0, skip_nonref=True, skip_loop_filter=True)


def fast_mode_precision(device: str) -> str:
    """The CNN precision of the fast reference mode on ``device`` (a resolved device, e.g. ``"cpu"``):
    ``"bf16"`` on a CPU with native bf16, else ``"auto"`` (fp32 on CPU, autocast on a GPU)."""
    from vmatch.embed import cpu_has_native_bf16

    return "bf16" if device == "cpu" and cpu_has_native_bf16() else "auto"
