"""Typed, immutable records passed between the stages of vmatch.

decode -> sample -> embed -> bank -> search -> align -> report

Arrays inside records are numpy arrays; times are presentation times in seconds from the start of
the video stream (never frame counters).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`vmatch.decode.probe` learns about a video without decoding all of it.

    ``width``/``height`` are the *display* size: after rotation metadata is applied.
    ``duration`` is in seconds; ``fps`` is the container's average rate, informational only.
    """

    path: str
    duration: float
    width: int
    height: int
    rotation: int = 0
    fps: float | None = None
    codec: str = ""
    container: str = ""
    n_frames: int | None = None


@dataclass(frozen=True)
class VideoEmbedding:
    """Frame embeddings of one video with the presentation time of each frame.

    ``timestamps``: float64 [N], seconds, strictly increasing.
    ``features``: float32 [N, D], rows L2-normalised.
    ``duration``: seconds of the whole video (not only of the sampled span).
    ``model_id``: :attr:`vmatch.models.ModelSpec.model_id` of the model that made the features.
    ``sha256``: content hash of the source file (hex), "" when unknown.
    ``n_blank``: sampled frames dropped because they carried no content (solid colour).
    ``local``: the frames' ORB keypoints (:class:`vmatch.verify.LocalFeatures`, one entry per row of
    ``features``) used to verify candidate pairs, or None when not extracted.
    """

    video_id: str
    timestamps: np.ndarray
    features: np.ndarray
    duration: float
    model_id: str
    sha256: str = ""
    n_blank: int = 0
    local: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        ts = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        feats = np.asarray(self.features, dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"{self.video_id}: features must be 2-D [N, D], got shape {feats.shape}")
        if feats.shape[0] != ts.shape[0]:
            raise ValueError(
                f"{self.video_id}: {ts.shape[0]} timestamps for {feats.shape[0]} feature rows"
            )
        if ts.size > 1 and not np.all(np.diff(ts) > 0):
            raise ValueError(f"{self.video_id}: timestamps must be strictly increasing")
        if not math.isfinite(self.duration) or self.duration < 0:
            raise ValueError(f"{self.video_id}: duration must be a finite number >= 0")
        if self.local is not None and len(self.local) != ts.shape[0]:
            raise ValueError(f"{self.video_id}: local features of {len(self.local)} frames for {ts.shape[0]} timestamps")
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "features", feats)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


@dataclass(frozen=True)
class Segment:
    """A copied interval: ``[query_start, query_end]`` in the query matches
    ``[reference_start, reference_end]`` in the reference (seconds, presentation times of the
    first and last matching sampled frames)."""

    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    score: float

    def to_dict(self) -> dict[str, float]:
        return {
            "query_start": round(float(self.query_start), 3),
            "query_end": round(float(self.query_end), 3),
            "reference_start": round(float(self.reference_start), 3),
            "reference_end": round(float(self.reference_end), 3),
            "score": round(float(self.score), 4),
        }


@dataclass(frozen=True)
class Match:
    """One reference found in a query: its pair score, the copied segments (best first), and the
    signal that found it: ``"cnn"`` (frame embeddings, segments located) or an exact file hash
    (``"md5"``, ``"sha1"``: score 1, the whole video on both sides) or ``"vpdq"`` (score = query
    match percent / 100, no segment; ``details`` holds ``query_match_percent`` and
    ``compared_match_percent``)."""

    reference: str
    score: float
    segments: tuple[Segment, ...] = ()
    signal_type: str = "cnn"
    details: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "score": round(float(self.score), 4),
            "signal_type": self.signal_type,
            **{k: round(float(v), 4 if k.endswith("score") else 2) for k, v in self.details.items()},
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class MatchReport:
    """The answer for one query file: matches sorted by score (best first), or an error."""

    query: str
    duration: float
    threshold: float
    matches: tuple[Match, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query,
            "duration": round(float(self.duration), 3),
            "threshold": float(self.threshold),
        }
        if self.error is not None:
            out["error"] = self.error
        else:
            out["matches"] = [m.to_dict() for m in self.matches]
        return out


@dataclass(frozen=True)
class ReferenceInfo:
    """One reference as the bank stores it (metadata only)."""

    reference: str
    duration: float
    n_frames: int
    sha256: str
    added_at: str
    source_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
