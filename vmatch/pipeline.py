"""An index run: many video files into a bank, and the fast reference mode.

``index_videos`` adds many files to a bank (each file atomically through :mod:`vmatch.index`'s
store path, failures reported and skipped; decoding runs ahead of the CNN in
:mod:`vmatch.parallel`'s executor); ``lock_for_run`` takes the writer lock once for the run.
Sampling and embedding a file is :mod:`vmatch.sample`, matching a query :mod:`vmatch.match`.
"""

from __future__ import annotations

import logging
import os
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from vmatch.errors import UsageError
# MatchParams, ModelCalibration, calibration_for, match_embedding, is_blank and embed_video are also
# read from here by benchmarks/, models/fit_projection.py and the README (their home before issue 15).
from vmatch.match import MatchParams, ModelCalibration, calibration_for, match_embedding  # noqa: F401
from vmatch.sample import check_fps, embed_video, is_blank  # noqa: F401
from vmatch.types import VideoEmbedding

log = logging.getLogger(__name__)

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
    keypoints: str = "reference",
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
        keypoints: ``"reference"`` stores each frame's local features, with which matches are
            verified (:mod:`vmatch.verify`); ``"none"`` stores none (matches against such a
            reference cannot be verified, hence are never reported: for cost comparisons only).
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
    fps = check_fps(fps)
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
            skip_loop_filter=bool(skip_loop_filter), keypoints=keypoints,
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
