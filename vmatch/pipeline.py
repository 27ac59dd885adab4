"""An index run: many video files into a bank.

``index_videos`` adds many files to a bank (each file atomically through :mod:`vmatch.index`'s
store path, failures reported and skipped; decoding runs ahead of the CNN in
:mod:`vmatch.parallel`'s executor); ``lock_for_run`` takes the writer lock once for the run. Its
options are records the caller passes: :mod:`vmatch.options` (decoding and sampling, the run) and
:class:`vmatch.threads.ThreadPolicy` (threads).
Sampling and embedding a file is :mod:`vmatch.sample`, matching a query :mod:`vmatch.match`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from vmatch.errors import UsageError
# MatchParams, ModelCalibration, calibration_for, match_embedding, is_blank and embed_video are also
# read from here by benchmarks/, models/fit_projection.py and the README (their home before issue 15).
from vmatch.match import MatchParams, ModelCalibration, calibration_for, match_embedding  # noqa: F401
# The fast reference mode and its precision rule are read from here by the CLI, benchmarks/ and tests.
from vmatch.options import DecodeOptions, FAST_REFERENCE_MODE, fast_mode_precision, IndexOptions  # noqa: F401
from vmatch.sample import check_fps, embed_video, is_blank  # noqa: F401
from vmatch.threads import ThreadPolicy
from vmatch.types import VideoEmbedding

log = logging.getLogger(__name__)

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
    decode: DecodeOptions = DecodeOptions(),
    options: IndexOptions = IndexOptions(),
    threads: ThreadPolicy = ThreadPolicy(),
    ref_id: str | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[str, VideoEmbedding], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> IndexSummary:
    """Embed and add every video in ``paths`` to ``bank``, one atomic write per video.

    A file that cannot be read is reported through ``on_error(path, message)`` and skipped; the
    others still go through. ``ref_id`` may only be given with exactly one path. Every reference
    also gets its MD5 and SHA-1; with ``options.vpdq`` its vPDQ hash too (a second, full-size decode).

    Args:
        decode: how each file is decoded and sampled, and which local features are stored with
            its frames (:class:`~vmatch.options.DecodeOptions`; :data:`~vmatch.options.FAST_REFERENCE_MODE`
            for the fast reference mode).
        options: vPDQ, the executor's chunks and queue, periodic saves (:class:`~vmatch.options.IndexOptions`).
        threads: decode workers running ahead of the CNN (:mod:`vmatch.parallel`), FFmpeg threads per
            decoder and torch threads of a CPU CNN beside them (:class:`~vmatch.threads.ThreadPolicy`;
            its defaults derive them from the cores; ``ThreadPolicy(workers=0)``: decode and embed one
            after the other).
    """
    from vmatch.parallel import index_files

    from vmatch.bank import validate_ref_id

    for name, value, kind in (("decode", decode, DecodeOptions), ("options", options, IndexOptions),
                              ("threads", threads, ThreadPolicy)):
        if not isinstance(value, kind):
            raise UsageError(f"index_videos: {name} must be a {kind.__name__}, got {type(value).__name__}")
    paths = [Path(p) for p in paths]
    if ref_id is not None and len(paths) != 1:
        raise UsageError("--id can only be used with exactly one video file")
    if ref_id is not None:  # a bad id is the caller's error, not a failure of the file
        validate_ref_id(ref_id)
    lock_for_run(bank, [ref_id if ref_id is not None else p.stem for p in paths])
    summary = IndexSummary()
    t0 = time.monotonic()
    embedder = bank.embedder()
    try:
        index_files(
            bank, paths, embedder, ref_id=ref_id, summary=summary, decode=decode, options=options, threads=threads,
            on_error=on_error, on_done=on_done, progress=progress,
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
