"""Windows of long videos: how many decode windows a file gets (:func:`window_count`) and one
video's embedding merged back from its windows on the driver (:func:`merge_windows`)."""

from __future__ import annotations

import math

import numpy as np

from vmatch.distributed.tasks import EmbeddedVideo
from vmatch.types import VideoEmbedding
from vmatch.verify import LocalFeatures


def window_count(duration: float, fps: float, chunk: int) -> int:
    """Decode windows of ``chunk`` sampled frames for a file of ``duration`` seconds (0: unknown)
    sampled at ``fps``: 1 unless the file holds more than ``chunk`` sampling targets."""
    n_targets = math.ceil(duration * fps - 1e-9) if duration > 0 else 0
    return max(1, math.ceil(n_targets / chunk)) if n_targets > chunk else 1


def merge_windows(parts: list[EmbeddedVideo]) -> VideoEmbedding:
    """One video's embedding from its windows, in order: a frame that a window repeats from the
    one before (same presentation time, a frame on screen across the boundary) is kept once."""
    first = parts[0].embedding
    if len(parts) == 1:
        return first
    ts, fs, locs, blanks = [], [], [], set()
    last = -np.inf
    for p in parts:
        e = p.embedding
        keep = e.timestamps > last
        ts.append(e.timestamps[keep])
        fs.append(e.features[keep])
        locs.append(e.local.select(keep) if e.local is not None else None)
        if len(e.timestamps):
            last = max(last, float(e.timestamps[-1]))
        blanks.update(float(t) for t in p.blank_timestamps)
    timestamps = np.concatenate(ts)
    blanks -= set(timestamps.tolist())
    return VideoEmbedding(
        video_id=first.video_id,
        timestamps=timestamps,
        features=np.concatenate(fs),
        duration=max(p.embedding.duration for p in parts),
        model_id=first.model_id,
        n_blank=len(blanks),
        local=LocalFeatures.concat(locs) if all(x is not None for x in locs) else None,
    )
