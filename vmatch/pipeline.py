"""Wiring of the stages: decode -> sample -> embed -> bank -> search -> align -> report.

``embed_video`` turns one file into a :class:`VideoEmbedding`; ``index_videos`` adds many files to a
bank (each file atomically, failures reported and skipped); ``match_query`` turns one query into a
:class:`MatchReport`.

Score normalisation (in the manner of the VSC 2022 baseline, CSLS-style): every query frame gets
a bias ``-beta * sim(query frame, nearest background frame)``, where the background is a set of
frames from videos that are never references (the model's artifact, from the training split of
the public clips, plus generated solid-colour, gradient and text-slide frames). A query frame that
looks like everything (black, blank, a slide) is as close to the background as to any reference,
so its normalised similarity is ~0 and it cannot produce a match; a real copy stands far above.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from vmatch.align import AlignParams, align_pair
from vmatch.errors import DecodeError, ModelError, UsageError, VmatchError
from vmatch.types import Match, MatchReport, Segment, VideoEmbedding

log = logging.getLogger(__name__)

#: A frame whose pixel standard deviation (0-255 scale) is below this carries no content
#: (solid colour, fade to black): it is neither indexed nor searched.
BLANK_STD = 4.0


@dataclass(frozen=True)
class MatchParams:
    """Parameters of matching.

    Attributes:
        k: reference frames retrieved per query frame in the frame-level search.
        max_candidates: references aligned per query at most (best frame hits first).
        beta: weight of the background (score normalisation) term.
        threshold: global decision threshold on the pair score; None = the model's calibration.
        align: temporal alignment parameters.
    """

    k: int = 32
    max_candidates: int = 50
    beta: float = 1.0
    threshold: float | None = None
    align: AlignParams = field(default_factory=AlignParams)

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_candidates < 1:
            raise UsageError("MatchParams: k and max_candidates must be >= 1")
        if not (0.0 <= self.beta <= 4.0):
            raise UsageError("MatchParams: beta must be within [0, 4]")


def _check_fps(fps: float) -> float:
    try:
        f = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"sampling rate must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(f) or f <= 0 or f > 120:
        raise UsageError(f"sampling rate must be > 0 and <= 120 frames per second, got {fps}")
    return f


def embed_video(
    path: str | os.PathLike,
    embedder,
    *,
    fps: float = 1.0,
    video_id: str | None = None,
    hash_file: bool = True,
    blank_std: float = BLANK_STD,
    progress: Callable[[float], None] | None = None,
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

    Returns:
        A :class:`VideoEmbedding`; it may hold zero frames when every sampled frame was blank.

    Raises:
        DecodeError: the file cannot be read (the message names it and says why).
    """
    from vmatch.decode import probe, sha256_file

    fps = _check_fps(fps)
    p = Path(path)
    info = probe(p)
    spec = embedder.spec
    size = tuple(spec.input_size)
    batch = max(1, int(getattr(embedder, "batch_size", 32)))
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
    for t, rgb in content_frames(p, counts, fps=fps, size=size, blank_std=blank_std):
        if progress is not None:
            progress(max(0.0, t - reported))
            reported = t
        buf_t.append(float(t))
        buf_f.append(rgb)
        if len(buf_f) >= batch:
            flush()
    flush()
    n_blank, last_t = counts.n_blank, counts.last_t
    duration = _duration(info, last_t, fps)
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
    )


def is_blank(rgb: np.ndarray, blank_std: float = BLANK_STD) -> bool:
    """Whether a frame carries no content: its pixel standard deviation is below ``blank_std`` in
    every colour channel (a solid colour such as red (200, 40, 40) is flat in each channel, though
    its values differ across channels)."""
    return float(rgb.reshape(-1, rgb.shape[-1]).std(axis=0).max()) < blank_std


@dataclass
class SampleCounts:
    """What :func:`content_frames` saw: sampled frames, blank ones among them, the last time."""

    n_seen: int = 0
    n_blank: int = 0
    last_t: float = 0.0


#: The fast reference mode (``vmatch index --fast``): options of :func:`index_videos`. References sampled at
#: 0.5 frame/s, GOPs up to 2 s decoded as their keyframe, B-frames and the deblocking filter skipped; with
#: the CNN in bf16 where the CPU has it (:func:`fast_mode_precision`). Measured in benchmarks/RESULTS.md
#: (issue 7): pair µAP as the exact path's on two benchmark draws, located reference segments coarser.
FAST_REFERENCE_MODE = types.MappingProxyType(
    {"fps": 0.5, "keyframe_gop": 2.0, "skip_nonref": True, "skip_loop_filter": True}
)


def fast_mode_precision(device: str) -> str:
    """The CNN precision of the fast reference mode on ``device`` (a resolved device, e.g. ``"cpu"``):
    ``"bf16"`` on a CPU with native bf16, else ``"auto"`` (fp32 on CPU, autocast on a GPU)."""
    from vmatch.embed import cpu_has_native_bf16

    return "bf16" if device == "cpu" and cpu_has_native_bf16() else "auto"


#: Sampling rate of the second, exact pass over a file whose sparse samples were all blank (see
#: :func:`content_frames`): the default rate.
DENSE_FPS = 1.0


def content_frames(
    path: Path,
    counts: SampleCounts,
    *,
    fps: float,
    size: tuple[int, int],
    blank_std: float = BLANK_STD,
    **decode_options,
):
    """The sampled frames of ``path`` that are not blank, as ``(t, rgb)`` (``iter_frames`` with
    ``decode_options``), counting into ``counts``; raises :class:`DecodeError` at the end when the
    file had no decodable frame. The one sampling loop of indexing and matching.

    When sampling was sparse — keyframe mode (``keyframe_gop > 0``) or fewer than
    :data:`DENSE_FPS` frames a second — a file whose samples are all blank (a black leader as the
    only keyframe or the only sample of a short clip) is sampled again exactly at ``max(fps,
    DENSE_FPS)``, so that a fast mode never loses a file the default sampling indexes."""
    from vmatch.decode import iter_frames

    for t, rgb in iter_frames(path, fps=fps, size=size, **decode_options):
        counts.n_seen += 1
        counts.last_t = t
        if is_blank(rgb, blank_std):
            counts.n_blank += 1
            continue
        yield t, rgb
    if counts.n_seen and counts.n_blank == counts.n_seen and (decode_options.get("keyframe_gop") or fps < DENSE_FPS):
        counts.n_seen = counts.n_blank = 0
        yield from content_frames(path, counts, fps=max(fps, DENSE_FPS), size=size, blank_std=blank_std,
                                  **{**decode_options, "keyframe_gop": 0.0})
        return
    if counts.n_seen == 0:
        raise DecodeError(str(path), "no decodable video frames")


def _duration(info, last_t: float, fps: float) -> float:
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


def sample_video(
    path: str | os.PathLike,
    *,
    size: tuple[int, int],
    fps: float = 1.0,
    blank_std: float = BLANK_STD,
    start_index: int = 0,
    max_frames: int | None = None,
) -> SampledVideo:
    """Decode and sample one video exactly as :func:`embed_video` does, without embedding.

    Holds the sampled frames in memory (``N x H x W x 3`` bytes, ~150 KB a frame at 224x224);
    :func:`embed_video` streams instead. A long video is sampled in windows: ``start_index``
    (the first sampling target, ``start_index / fps`` seconds) and ``max_frames`` (sampled frames
    at most) select one; concatenated in order, dropping a frame already yielded by the window
    before (same time), the windows give the frames of the whole video. A window after the
    first may be empty (past the end).

    Raises:
        DecodeError: the file cannot be read (the message names it and says why).
    """
    from vmatch.decode import iter_frames, probe

    fps = _check_fps(fps)
    p = Path(path)
    info = probe(p)
    times: list[float] = []
    blank_times: list[float] = []
    frames: list[np.ndarray] = []
    n_seen = 0
    last_t = 0.0
    for t, rgb in iter_frames(p, fps=fps, size=tuple(size), start=start_index / fps, max_frames=max_frames):
        n_seen += 1
        last_t = t
        if is_blank(rgb, blank_std):
            blank_times.append(float(t))
            continue
        times.append(float(t))
        frames.append(rgb)
    if n_seen == 0 and start_index == 0:
        raise DecodeError(str(p), "no decodable video frames")
    if n_seen and not frames and fps < DENSE_FPS and start_index == 0 and max_frames is None:
        # The dense pass of content_frames: a whole file whose sparse samples are all blank is
        # sampled again at the default rate, so that Ray below 1 frame/s loses no file the local
        # flow keeps. (A file decoded in windows is long: its windows are not re-sampled.)
        return sample_video(p, size=size, fps=DENSE_FPS, blank_std=blank_std)
    arr = np.stack(frames) if frames else np.zeros((0, size[1], size[0], 3), np.uint8)
    return SampledVideo(np.asarray(times, np.float64), arr, _duration(info, last_t, fps), len(blank_times),
                        np.asarray(blank_times, np.float64))


def embed_sampled(sampled: SampledVideo, embedder, *, video_id: str, sha256: str = "") -> VideoEmbedding:
    """Embed the frames of a :class:`SampledVideo` in batches of ``embedder.batch_size`` (the
    same batches as :func:`embed_video`)."""
    batch = max(1, int(getattr(embedder, "batch_size", 32)))
    n = len(sampled.timestamps)
    feats = [embedder.embed(sampled.frames[a : a + batch]) for a in range(0, n, batch)]
    return VideoEmbedding(
        video_id=video_id,
        timestamps=sampled.timestamps,
        features=np.concatenate(feats) if feats else np.zeros((0, embedder.spec.dim), np.float32),
        duration=sampled.duration,
        model_id=embedder.spec.model_id,
        sha256=sha256,
        n_blank=sampled.n_blank,
    )


# ---------------------------------------------------------------------- background & calibration
class ModelCalibration:
    """Background frames and default threshold of a model (per embedder, built once)."""

    def __init__(self, background: np.ndarray, threshold: float) -> None:
        self.background = np.ascontiguousarray(background, dtype=np.float32)
        self.threshold = float(threshold)

    def background_similarity(self, features: np.ndarray) -> np.ndarray:
        """[N] similarity of each row of ``features`` to its nearest background frame."""
        if self.background.shape[0] == 0 or features.shape[0] == 0:
            return np.zeros(features.shape[0], np.float32)
        out = np.empty(features.shape[0], np.float32)
        for a in range(0, features.shape[0], 4096):
            out[a : a + 4096] = (features[a : a + 4096] @ self.background.T).max(axis=1)
        return out


def calibration_for(embedder) -> ModelCalibration:
    """The calibration of ``embedder``'s model: from its artifact when it has one, else synthetic.

    The synthetic background (solid colours, gradients, text slides, noise) is generated and
    embedded on the fly; it is what catches frames that "match everything".
    """
    cached = getattr(embedder, "_vmatch_calibration", None)
    if cached is not None:
        return cached
    from vmatch.models import FIT_PROJECTION_COMMAND, load_calibration, projection_path

    models_dir = getattr(embedder, "models_dir", None)
    cal = load_calibration(embedder.spec, models_dir=models_dir)
    if cal is None and embedder.spec.projection:
        # A bank model without its calibration has no meaningful threshold: refuse, never guess.
        raise ModelError(
            f"{projection_path(embedder.spec, models_dir=models_dir)}: holds no calibration (background set and "
            f"threshold) for model {embedder.spec.name!r}; refit it with `{FIT_PROJECTION_COMMAND}`"
        )
    if cal is None:  # a model without projection (the fake test embedder, the raw fitting model)
        from vmatch.synth import uninformative_frames

        frames = uninformative_frames(tuple(embedder.spec.input_size))
        bg = embedder.embed(frames)
        cal = ModelCalibration(bg, DEFAULT_UNCALIBRATED_THRESHOLD)
    else:
        cal = ModelCalibration(cal["background"], cal["threshold"])
    try:
        embedder._vmatch_calibration = cal
    except AttributeError:
        pass
    return cal


#: Threshold used with a model that has no projection artifact, hence no calibration (the fake
#: test embedder, the raw fitting model); a model with a projection must carry its calibration.
DEFAULT_UNCALIBRATED_THRESHOLD = 0.15


# ---------------------------------------------------------------------- matching
def match_embedding(
    bank,
    query: VideoEmbedding,
    *,
    calibration: ModelCalibration,
    params: MatchParams = MatchParams(),
    min_score: float | None = None,
    query_name: str | None = None,
) -> MatchReport:
    """Match one embedded query against ``bank``: frame search, normalisation, alignment."""
    if query.model_id != bank.model_id:
        from vmatch.errors import ModelMismatchError

        raise ModelMismatchError(
            f"{query_name or query.video_id}: query embedded with model {query.model_id}, "
            f"bank {bank.path} holds model {bank.model_id}"
        )
    threshold = round(float(params.threshold if params.threshold is not None else calibration.threshold), 6)
    floor = threshold if min_score is None else float(min_score)
    name = query_name if query_name is not None else query.video_id
    if len(query) == 0:
        return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=())
    snap = bank.snapshot()
    q = query.features
    bias = params.beta * calibration.background_similarity(q)
    hits = bank.search(q, params.k, snapshot=snap)  # one generation for the whole match
    if hits.ref_index.size == 0:
        return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=())
    adj = hits.similarity - bias[:, None]
    ok = (hits.ref_index >= 0) & (adj > params.align.hit_threshold)
    best_by_ref: dict[int, float] = {}
    for r, s in zip(hits.ref_index[ok].tolist(), adj[ok].tolist()):
        if s > best_by_ref.get(r, -np.inf):
            best_by_ref[r] = s
    cands = sorted(best_by_ref, key=lambda r: -best_by_ref[r])[: params.max_candidates]
    matches: list[Match] = []
    for r in cands:
        ref_vecs = bank.reference_vectors(r, snapshot=snap)
        sim = q @ ref_vecs.T - bias[:, None]
        segs = align_pair(sim, query.timestamps, snap.timestamps[r], params.align)
        if not segs:
            continue
        score = segs[0].score
        if score >= floor:
            # Segments below the floor are coincidences around the copy, not copies: not reported.
            kept = tuple(s for s in segs if s.score >= floor)
            matches.append(Match(reference=snap.ref_ids[r], score=float(score), segments=kept))
    matches.sort(key=lambda m: (-m.score, m.reference))
    return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=tuple(matches))


def match_query(
    bank,
    item,
    *,
    fps: float = 1.0,
    params: MatchParams | None = None,
    min_score: float | None = None,
) -> MatchReport:
    """Match a query given as a video path or a :class:`VideoEmbedding` (see ``Bank.match``)."""
    params = params or MatchParams()
    embedder = bank.embedder()
    if isinstance(item, VideoEmbedding):
        q, name = item, item.video_id
    else:
        q = embed_video(item, embedder, fps=fps, hash_file=False)
        name = str(item)
    report = match_embedding(
        bank, q, calibration=calibration_for(embedder), params=params, min_score=min_score, query_name=name
    )
    if isinstance(item, VideoEmbedding):
        return report
    return with_hash_matches(bank, report, Path(item), q.duration, device=getattr(embedder, "device", "cpu"))


def hash_signals_needed(bank) -> tuple[bool, bool, bool]:
    """Which hash signals a query needs against ``bank``: (exact file hashes, vPDQ, image PDQ)."""
    return bank.has_hashes(), bank.has_hashes(("vpdq",)), bank.has_hashes(("pdq",))


def with_hash_matches(
    bank,
    report: MatchReport,
    path: Path,
    duration: float,
    *,
    device: str = "cpu",
    digests: dict[str, str] | None = None,
    variants: list | None = None,
) -> MatchReport:
    """Add the hash-signal matches (exact MD5/SHA-1, vPDQ, image PDQ) of query file ``path`` to
    its CNN ``report``, for the signals the bank holds. ``digests`` (from ``file_hashes``) and
    ``variants`` (from ``hash_video_dihedral``) may be given when computed elsewhere (e.g. on a
    distributed worker); otherwise they are computed here."""
    exact, has_vpdq, has_pdq = hash_signals_needed(bank)
    if exact:
        report = _with_exact_matches(bank, report, Path(path), duration, digests=digests)
    if has_vpdq or has_pdq:
        if variants is None:
            from vmatch.signals.vpdq import hash_video_dihedral

            variants = hash_video_dihedral(path, device=device)
        if has_vpdq:
            report = with_vpdq_matches(bank, report, *variants)
        if has_pdq:
            report = with_pdq_matches(bank, report, [f for v in variants for f in v])
    return report


def with_pdq_matches(bank, report: MatchReport, frames: list) -> MatchReport:
    """Add the references holding an image PDQ within 31 bits of one of the query's frames (any
    dihedral variant); score = 1 - distance / 256; ``details``: distance and the frame's time."""
    found = [
        Match(reference=ref, score=1.0 - dist / 256.0, segments=(), signal_type="pdq",
              details={"distance": dist, "query_time": t})
        for ref, dist, t in bank.match_pdq(frames)
    ]
    if not found:
        return report
    matches = sorted([*found, *report.matches], key=lambda m: (-m.score, m.reference, m.signal_type))
    return dataclasses.replace(report, matches=tuple(matches))


def with_vpdq_matches(bank, report: MatchReport, *query_variants: list) -> MatchReport:
    """Add the references whose vPDQ matches the query by the standard rule (Hamming <= 31,
    quality >= 50, query match >= 80 %); score = query match percent / 100.

    ``query_variants``: the query's vPDQ, optionally followed by its dihedral variants (flips,
    90-degree rotations); each is matched and the best result per reference is kept.
    """
    best: dict[str, object] = {}
    for variant in query_variants:
        for ref, m in bank.match_vpdq(variant):
            if ref not in best or m.query_match_percent > best[ref].query_match_percent:
                best[ref] = m
    found = [
        Match(
            reference=ref,
            score=m.query_match_percent / 100.0,
            segments=(),
            signal_type="vpdq",
            details={"query_match_percent": m.query_match_percent,
                     "compared_match_percent": m.compared_match_percent},
        )
        for ref, m in best.items()
    ]
    if not found:
        return report
    matches = sorted([*found, *report.matches], key=lambda m: (-m.score, m.reference, m.signal_type))
    return dataclasses.replace(report, matches=tuple(matches))


def _with_exact_matches(
    bank, report: MatchReport, path: Path, duration: float, *, digests: dict[str, str] | None = None
) -> MatchReport:
    """Add the references whose stored MD5/SHA-1 equals the query file's (score 1: the same bytes,
    so the whole video on both timelines)."""
    from vmatch.bank import EXACT_SIGNAL_TYPES
    from vmatch.signals.exact import file_hashes

    if digests is None:
        digests = file_hashes(path)
    whole = (Segment(0.0, duration, 0.0, duration, 1.0),)
    exact = [
        Match(reference=ref, score=1.0, segments=whole, signal_type=t)
        for t in EXACT_SIGNAL_TYPES
        for ref in bank.lookup_hash(t, digests[t])
    ]
    if not exact:
        return report
    matches = sorted([*exact, *report.matches], key=lambda m: (-m.score, m.reference, m.signal_type))
    return dataclasses.replace(report, matches=tuple(matches))


# ---------------------------------------------------------------------- indexing
@dataclass
class IndexSummary:
    """What ``index_videos`` did."""

    videos: int = 0
    frames: int = 0
    seconds: float = 0.0
    elapsed: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def realtime_factor(self) -> float:
        return self.seconds / self.elapsed if self.elapsed > 0 else 0.0


def index_videos(
    bank,
    paths: Iterable[str | os.PathLike],
    *,
    fps: float = 1.0,
    ref_id: str | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[str, VideoEmbedding], None] | None = None,
    progress: Callable[[float], None] | None = None,
    save_every: float = 300.0,
    vpdq: bool = False,
    workers: int | None = None,
    skip_nonref: bool = False,
    cnn_threads: int | None = None,
    keyframe_gop: float = 0.0,
    skip_loop_filter: bool = False,
) -> IndexSummary:
    """Embed and add every video in ``paths`` to ``bank``, one atomic write per video.

    A file that cannot be read is reported through ``on_error(path, message)`` and skipped; the
    others still go through. ``ref_id`` may only be given with exactly one path. Every reference
    also gets its MD5 and SHA-1; with ``vpdq=True`` its vPDQ hash too (a second, full-size decode).

    Args:
        workers: decode threads running ahead of the CNN (:mod:`vmatch.parallel`); None: one per
            core with a CPU CNN, one per core beyond the first with a GPU; 0: decode and embed one
            after the other.
        cnn_threads: torch threads of a CPU CNN while decode workers run (None: a third of the
            cores, at least 1; the caller's setting is restored afterwards).
        skip_nonref: let the decoder skip non-reference frames (B-frames): faster, and a sampled
            frame may be a neighbour of the exact one (see benchmarks/RESULTS.md for what it costs).
        keyframe_gop: the fast mode for references (:func:`vmatch.decode.iter_frames`): GOPs up to
            this many seconds are decoded as their keyframe alone (0: off, every sample exact).
        skip_loop_filter: the decoder skips its deblocking filter (:func:`vmatch.decode.iter_frames`):
            faster decoding of references, slightly altered frames.
    """
    from vmatch.decode import check_keyframe_gop
    from vmatch.parallel import default_workers, index_files

    from vmatch.bank import validate_ref_id

    paths = [Path(p) for p in paths]
    if ref_id is not None and len(paths) != 1:
        raise UsageError("--id can only be used with exactly one video file")
    if ref_id is not None:  # a bad id is the caller's error, not a failure of the file
        validate_ref_id(ref_id)
    fps = _check_fps(fps)
    keyframe_gop = check_keyframe_gop(keyframe_gop)
    if isinstance(workers, bool) or not (workers is None or isinstance(workers, int)) or (workers or 0) < 0:
        raise UsageError(f"workers must be an integer >= 0, got {workers!r}")
    if cnn_threads is not None and (isinstance(cnn_threads, bool) or not isinstance(cnn_threads, int) or cnn_threads < 1):
        raise UsageError(f"cnn_threads must be an integer >= 1, got {cnn_threads!r}")
    lock_for_run(bank, [ref_id if ref_id is not None else p.stem for p in paths])
    summary = IndexSummary()
    t0 = time.monotonic()
    embedder = bank.embedder()
    if workers is None:
        workers = default_workers(getattr(embedder, "device", "cpu"))
    try:
        index_files(
            bank, paths, embedder, fps=fps, ref_id=ref_id, summary=summary, workers=workers,
            skip_nonref=skip_nonref, keyframe_gop=keyframe_gop, vpdq=vpdq, cnn_threads=cnn_threads,
            skip_loop_filter=bool(skip_loop_filter),
            on_error=on_error, on_done=on_done, progress=progress, save_every=save_every,
        )
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.elapsed = time.monotonic() - t0
    return summary


def lock_for_run(bank, ref_ids: list[str], *, wait: bool = True, on_wait: Callable | None = None) -> None:
    """Take the writer lock of ``bank`` for a run that writes ``ref_ids``, before any decoding:
    of a sharded bank, only the shards those ids go to (so that shards are built independently).

    Taken once for the whole run, the lock is waited for (as long as it takes with ``wait``)
    before the work starts, instead of per file, where a wait that runs out would lose the file.
    ``on_wait`` (default: a log warning) is told once when another process holds it. A lock this
    handle already holds (``vmatch index`` takes it first) is kept as it is."""

    def warn(holder) -> None:
        log.warning("waiting for %s: another process%s is writing this bank", holder.lock_path, holder.described())

    if hasattr(bank, "n_shards"):
        from vmatch.shards import shard_of

        shards = sorted({shard_of(r, bank.n_shards) for r in ref_ids})
        bank.lock_for_writing(wait=wait, on_wait=on_wait or warn, shards=shards)
    else:
        bank.lock_for_writing(wait=wait, on_wait=on_wait or warn)


def add_video(
    bank,
    path: Path,
    embedder,
    *,
    fps: float = 1.0,
    ref_id: str | None = None,
    vpdq: bool = False,
    progress: Callable[[float], None] | None = None,
) -> VideoEmbedding:
    """Embed one video file and store it in ``bank`` (one transaction) with its MD5 and SHA-1
    (and vPDQ when asked); its SHA-256 is the reference's content id. Returns the embedding.

    Raises:
        DecodeError: unreadable, or every sampled frame is blank (nothing to index).
    """
    from vmatch.signals.exact import file_hashes

    emb = embed_video(path, embedder, fps=fps, video_id=ref_id, progress=progress, hash_file=False)
    digests = file_hashes(path)
    vp = None
    if vpdq and len(emb):
        from vmatch.signals.vpdq import hash_video

        vp = hash_video(path, device=getattr(embedder, "device", "cpu"))
    return store_video(bank, path, emb, digests=digests, fps=fps, vpdq=vp)


def store_video(
    bank,
    path: str | os.PathLike,
    emb: VideoEmbedding,
    *,
    digests: dict[str, str],
    fps: float,
    vpdq: list | None = None,
) -> VideoEmbedding:
    """Write the embedding of video file ``path`` into ``bank`` in one transaction, with its MD5
    and SHA-1 (``digests`` from :func:`vmatch.signals.exact.file_hashes`) and optional vPDQ.

    The one add path of a video file, used by local indexing (:func:`add_video`) and by the
    distributed engine's driver (:mod:`vmatch.distributed`), so that both store the same rows.

    Raises:
        DecodeError: every sampled frame was blank (nothing to index).
    """
    if len(emb) == 0:
        raise DecodeError(str(path), f"all {emb.n_blank} sampled frames are blank (solid colour); nothing to index")
    emb = dataclasses.replace(emb, sha256=digests["sha256"])
    bank.add_embedding(
        emb,
        source_name=Path(path).name,
        extra={"fps": fps, "n_blank": emb.n_blank},
        hashes={"md5": digests["md5"], "sha1": digests["sha1"]},
        vpdq=vpdq,
    )
    return emb


