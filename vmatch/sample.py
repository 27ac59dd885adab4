"""Sampling: a video file to its non-blank frames at presentation times, and those frames embedded.

:func:`content_frames` is the one sampling loop (fixed rate or keyframes, windows, the dense pass
over a file whose sparse samples are all blank), as a :class:`~vmatch.options.DecodeOptions` says;
:func:`sample_video` samples a file, or one window of it, into memory for a distributed embedding
worker (Ray); :func:`embed_video` streams the samples of one file through an embedder in batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vmatch.embed.batches import batch_size_of, embed_in_batches
from vmatch.errors import DecodeError
# BLANK_STD, check_fps and KEYPOINT_KINDS are also read from here (the distributed engine, tests).
from vmatch.options import (  # noqa: F401
    BLANK_STD, check_fps, check_keypoints, DecodeOptions, DEFAULT_FPS, KEYPOINT_KINDS,
)
from vmatch.types import VideoEmbedding


def is_blank(rgb: np.ndarray, blank_std: float = BLANK_STD) -> bool:
    """Whether a frame carries no content: its pixel standard deviation is below ``blank_std`` in
    every colour channel (a solid colour such as red (200, 40, 40) is flat in each channel, though
    its values differ across channels)."""
    return float(rgb.reshape(-1, rgb.shape[-1]).std(axis=0).max()) < blank_std


@dataclass
class SampleCounts:
    """What :func:`content_frames` saw: sampled frames, blank ones among them (and their times, when
    ``blank_times`` is a list), the last time, and whether the dense pass replaced the sparse one."""

    n_seen: int = 0
    n_blank: int = 0
    last_t: float = 0.0
    blank_times: list[float] | None = None
    resampled: bool = False


#: Sampling rate of the second, exact pass over a file whose sparse samples were all blank (see
#: :func:`content_frames`): the default rate.
DENSE_FPS = DEFAULT_FPS


def content_frames(
    path: Path,
    counts: SampleCounts,
    decode: DecodeOptions,
    *,
    size: tuple[int, int],
    threads: int = 0,
    start: float = 0.0,
    max_frames: int | None = None,
):
    """The sampled frames of ``path`` that are not blank, as ``(t, rgb)`` (``iter_frames`` as
    ``decode`` says, at ``size`` with ``threads`` FFmpeg threads), counting into ``counts``. The one
    sampling loop of indexing, matching, the service and Ray's decode tasks.

    ``start`` (seconds) and ``max_frames`` select a window of the file (Ray decodes a long file in
    windows); a window after the first may be empty (past the end). Otherwise :class:`DecodeError`
    is raised at the end when the file had no decodable frame.

    When a whole file was sampled sparsely (:attr:`DecodeOptions.sparse`) — keyframe mode or fewer
    than :data:`DENSE_FPS` frames a second — and its samples are all blank (a black leader as the
    only keyframe or the only sample of a short clip), it is sampled again exactly at ``max(fps,
    DENSE_FPS)`` (:meth:`DecodeOptions.dense`), so that a fast mode never loses a file the default
    sampling indexes. (A file decoded in windows is long: its windows are not re-sampled.)"""
    from vmatch.decode import iter_frames

    for t, rgb in iter_frames(path, fps=decode.fps, size=size, threads=threads, start=start, max_frames=max_frames,
                              **decode.decoder_options()):
        counts.n_seen += 1
        counts.last_t = t
        if is_blank(rgb, decode.blank_std):
            counts.n_blank += 1
            if counts.blank_times is not None:
                counts.blank_times.append(float(t))
            continue
        yield t, rgb
    whole = start == 0 and max_frames is None
    if counts.n_seen and counts.n_blank == counts.n_seen and decode.sparse and whole:
        counts.n_seen = counts.n_blank = 0
        if counts.blank_times is not None:
            counts.blank_times.clear()
        counts.resampled = True
        yield from content_frames(path, counts, decode.dense(), size=size, threads=threads)
        return
    if counts.n_seen == 0 and start == 0:
        raise DecodeError(str(path), "no decodable video frames")


def local_extractor(keypoints: str, info):
    """The local-feature extractor (:class:`vmatch.verify.Extractor`) for the frames of a video
    whose :class:`~vmatch.types.VideoInfo` is ``info``: ``"query"`` extracts the frames and their
    mirror images (a flipped copy is verified against the reference as it is), ``"reference"`` the
    frames alone, ``"none"`` nothing (None)."""
    if check_keypoints(keypoints) == "none":
        return None
    from vmatch.verify import (DETECT_KEYPOINTS, QUERY_KEYPOINTS, SIFT_DETECT_KEYPOINTS, SIFT_QUERY_KEYPOINTS,
                               Extractor)

    aspect = info.width / info.height if info.width and info.height else 0.0
    if keypoints == "query":
        return Extractor(aspect=aspect, mirrored=True, max_keypoints=QUERY_KEYPOINTS,
                         sift_keypoints=SIFT_QUERY_KEYPOINTS)
    return Extractor(aspect=aspect, mirrored=False, max_keypoints=DETECT_KEYPOINTS,
                     sift_keypoints=SIFT_DETECT_KEYPOINTS)


def video_duration(info, last_t: float, fps: float) -> float:
    return float(info.duration) if info.duration and info.duration > 0 else last_t + 1.0 / fps


@dataclass(frozen=True)
class SampledVideo:
    """The non-blank sampled frames of one video, before embedding (what a distributed decode
    task hands to an embedding worker).

    ``timestamps``: float64 [N] presentation times; ``frames``: uint8 [N, H, W, 3] RGB at the
    model's input size; ``duration``: seconds of the whole video; ``n_blank``: frames dropped.
    """

    timestamps: np.ndarray
    frames: np.ndarray
    duration: float
    n_blank: int
    blank_timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    local: object = None  # vmatch.verify.LocalFeatures of the frames, or None


def sample_video(
    path: str | os.PathLike,
    *,
    size: tuple[int, int],
    fps: float = DEFAULT_FPS,
    blank_std: float = BLANK_STD,
    start_index: int = 0,
    max_frames: int | None = None,
    keypoints: str = "query",
) -> SampledVideo:
    """Decode and sample one video exactly as :func:`embed_video` does (:func:`content_frames`),
    without embedding.

    Holds the sampled frames in memory (``N x H x W x 3`` bytes, ~150 KB a frame at 224x224);
    :func:`embed_video` streams instead. A long video is sampled in windows: ``start_index``
    (the first sampling target, ``start_index / fps`` seconds) and ``max_frames`` (sampled frames
    at most) select one; concatenated in order, dropping a frame already yielded by the window
    before (same time), the windows give the frames of the whole video. A window after the
    first may be empty (past the end). ``keypoints``: which local features to extract with the
    frames (see :func:`local_extractor`).

    Raises:
        DecodeError: the file cannot be read (the message names it and says why).
    """
    from vmatch.decode import probe

    decode = DecodeOptions(fps=fps, blank_std=blank_std, keypoints=keypoints)  # Ray has no keyframe mode
    p = Path(path)
    info = probe(p)
    extractor = local_extractor(keypoints, info)
    times: list[float] = []
    frames: list[np.ndarray] = []
    counts = SampleCounts(blank_times=[])
    for t, rgb in content_frames(p, counts, decode, size=tuple(size), start=start_index / decode.fps,
                                 max_frames=max_frames):
        times.append(float(t))
        frames.append(rgb)
        if extractor is not None:
            extractor.add(rgb)
    arr = np.stack(frames) if frames else np.zeros((0, size[1], size[0], 3), np.uint8)
    rate = decode.dense().fps if counts.resampled else decode.fps  # the rate of the pass that gave the frames
    return SampledVideo(np.asarray(times, np.float64), arr, video_duration(info, counts.last_t, rate), counts.n_blank,
                        np.asarray(counts.blank_times, np.float64),
                        extractor.result() if extractor is not None else None)


def embed_video(
    path: str | os.PathLike,
    embedder,
    *,
    fps: float = DEFAULT_FPS,
    video_id: str | None = None,
    hash_file: bool = True,
    blank_std: float = BLANK_STD,
    progress: Callable[[float], None] | None = None,
    keypoints: str = "query",
) -> VideoEmbedding:
    """Decode, sample and embed one video.

    Args:
        path: the video file.
        embedder: an object with ``spec``, ``embed(frames uint8 [N,H,W,3]) -> float32 [N,D]``.
        fps: sampled frames per second (presentation-time based).
        video_id: id to record; default: file name without extension.
        hash_file: compute the sha256 of the file bytes (recorded in the bank).
        blank_std: frames whose pixel standard deviation is smaller in every colour channel are
            dropped as blank.
        progress: called with the seconds of video advanced since the last call.
        keypoints: the local features extracted with the embeddings for verification:
            ``"query"`` (with the mirrored frames), ``"reference"`` or ``"none"``
            (:func:`local_extractor`).

    Returns:
        A :class:`VideoEmbedding`; it may hold zero frames when every sampled frame was blank.

    Raises:
        DecodeError: the file cannot be read (the message names it and says why).
    """
    from vmatch.decode import probe, sha256_file

    decode = DecodeOptions(fps=fps, blank_std=blank_std, keypoints=keypoints)  # the exact sampling of a query
    p = Path(path)
    info = probe(p)
    spec = embedder.spec
    size = tuple(spec.input_size)
    batch = batch_size_of(embedder)
    extractor = local_extractor(keypoints, info)
    times: list[float] = []
    feats: list[np.ndarray] = []
    buf_t: list[float] = []
    buf_f: list[np.ndarray] = []

    def flush() -> None:
        if buf_f:
            feats.append(embedder.embed(np.stack(buf_f)))
            times.extend(buf_t)
            buf_f.clear()
            buf_t.clear()

    counts = SampleCounts()
    reported = 0.0
    for t, rgb in content_frames(p, counts, decode, size=size):
        if progress is not None:
            progress(max(0.0, t - reported))
            reported = t
        buf_t.append(float(t))
        buf_f.append(rgb)
        if extractor is not None:
            extractor.add(rgb)
        if len(buf_f) >= batch:
            flush()
    flush()
    n_blank, last_t = counts.n_blank, counts.last_t
    duration = video_duration(info, last_t, decode.fps)
    if progress is not None and duration > reported:
        progress(duration - reported)
    features = np.concatenate(feats) if feats else np.zeros((0, spec.dim), np.float32)
    return VideoEmbedding(
        video_id=video_id if video_id is not None else p.stem,
        timestamps=np.asarray(times, dtype=np.float64),
        features=features,
        duration=duration,
        model_id=spec.model_id,
        sha256=sha256_file(p) if hash_file else "",
        n_blank=n_blank,
        local=extractor.result() if extractor is not None else None,
    )


def embed_sampled(sampled: SampledVideo, embedder, *, video_id: str, sha256: str = "") -> VideoEmbedding:
    """Embed the frames of a :class:`SampledVideo` in batches of ``embedder.batch_size`` (the
    same batches as :func:`embed_video`)."""
    features = embed_in_batches(sampled.frames, batch_size_of(embedder), embedder.spec.dim, embedder.embed)
    return VideoEmbedding(
        video_id=video_id,
        timestamps=sampled.timestamps,
        features=features,
        duration=sampled.duration,
        model_id=embedder.spec.model_id,
        sha256=sha256,
        n_blank=sampled.n_blank,
        local=sampled.local,
    )
