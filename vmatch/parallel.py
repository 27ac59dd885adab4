"""Overlapped indexing on one machine: decode workers feed the CNN through a bounded queue.

Where it sits: ``pipeline.index_videos`` calls :func:`index_files`. The stages of
:func:`vmatch.sample.embed_video` (decode + sample, then embed) and of
:func:`vmatch.index.add_video` (file digests, optional vPDQ, one bank transaction per file) run
here as two concurrent stages::

    decode workers (threads, one file each)      main thread
    ----------------------------------------      -----------------------------------------------
    probe, iter_frames, blank check, digests  ->  queue (bounded, in chunks of frames)  ->  CNN in
    [vPDQ]                                        batches across files  ->  bank (one txn a file)

* PyAV releases the GIL while FFmpeg decodes and scales, hashlib while it digests, torch while it
  runs the CNN, so threads overlap for real; no process start-up, no pickling of frames.
* Memory is bounded whatever the length of the videos: a worker blocks when the queue holds
  ``queue_chunks`` chunks of at most ``chunk_frames`` frames (224x224 RGB: 150 KB a frame); a file's
  features (1 KB a frame at 256-d) are the only thing kept until the file is stored.
* The CNN gets batches of up to ``embedder.batch_size`` frames gathered across files, so many small
  files keep it as busy as one long one. Workers take the largest files first (:func:`largest_first`).
* Only the main thread writes the bank, one transaction per file, exactly as the sequential path
  (:func:`vmatch.index.store_video`); a file that fails is reported and skipped, the others go
  through; Ctrl-C stops the workers and keeps every file stored before.
* ``ThreadPolicy(workers=0)`` runs the same stages one after the other in the calling thread (the
  slow path the benchmarks compare with). What each file's decoding does is a
  :class:`~vmatch.options.DecodeOptions`, what the run does beside an :class:`~vmatch.options.IndexOptions`,
  its thread counts a :class:`~vmatch.threads.ThreadPolicy`, all three passed by the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vmatch.embed.batches import batch_size_of
from vmatch.errors import VmatchError
from vmatch.options import DecodeOptions, IndexOptions
from vmatch.threads import ThreadPolicy, torch_threads

#: Seconds a blocked worker waits before it checks again whether the run was stopped.
_POLL = 0.2


@dataclass
class _Frames:
    idx: int
    times: list[float]
    frames: list[np.ndarray]
    advanced: float  # seconds of video advanced since the previous message of this file


@dataclass
class _Done:
    idx: int
    duration: float
    n_blank: int
    digests: dict[str, str]
    vpdq: list | None
    advanced: float
    local: object = None  # vmatch.verify.LocalFeatures of the file's frames


@dataclass
class _Failed:
    idx: int
    message: str


@dataclass
class _FileState:
    times: list[float] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)


class _Stopped(Exception):
    """The run was stopped while a worker waited for room in the queue."""


def largest_first(paths: list[Path]) -> list[int]:
    """Indices of ``paths``, largest file first (ties and unreadable files in their given order).

    The decode workers take files in this order, so that a long file does not start last and
    decode alone while the other workers and the CNN idle (longest-processing-time-first
    scheduling; the file size stands in for the decoding work). Measured on the 720p set of
    ``benchmarks/throughput.py`` (2 cores, keyframe mode): 5-9 % more throughput than the given order.
    """

    def size(i: int) -> int:
        try:
            return Path(paths[i]).stat().st_size
        except OSError:  # reported by the worker that opens it
            return 0

    return sorted(range(len(paths)), key=lambda i: -size(i))


def produce_file(
    idx: int,
    path: Path,
    emit: Callable[[object], None],
    decode: DecodeOptions,
    *,
    size: tuple[int, int],
    chunk_frames: int,
    decoder_threads: int,
    vpdq: bool,
    device: str,
) -> None:
    """Decode, sample and digest one file, handing its frames to ``emit`` in chunks, then a
    :class:`_Done` (or a :class:`_Failed` naming the file and the reason)."""
    from vmatch.decode import probe
    from vmatch.sample import content_frames, local_extractor, SampleCounts, video_duration
    from vmatch.signals.exact import file_hashes

    try:
        info = probe(path)
        extractor = local_extractor(decode.keypoints, info)  # in this decode thread: OpenCV releases the GIL
        all_times: list[float] = []
        times: list[float] = []
        frames: list[np.ndarray] = []
        counts = SampleCounts()
        sent_t = 0.0
        for t, rgb in content_frames(path, counts, decode, size=size, threads=decoder_threads):
            times.append(float(t))
            frames.append(rgb)
            if extractor is not None:
                extractor.add(rgb)
                all_times.append(float(t))
            if len(frames) >= chunk_frames:
                emit(_Frames(idx, times, frames, max(0.0, t - sent_t)))
                sent_t = t
                times, frames = [], []
        n_blank, last_t = counts.n_blank, counts.last_t
        if frames:
            emit(_Frames(idx, times, frames, max(0.0, last_t - sent_t)))
            sent_t = last_t
        duration = video_duration(info, last_t, decode.fps)
        digests = file_hashes(path)
        vp = None
        if vpdq and counts.n_seen > n_blank:
            from vmatch.signals.vpdq import hash_video

            vp = hash_video(path, device=device)
        local = None
        if extractor is not None:  # prepared as the bank stores it here, beside the CNN, not in its thread
            from vmatch.verify import prepare_reference

            local = prepare_reference(extractor.result(), np.asarray(all_times, np.float64))
        emit(_Done(idx, duration, n_blank, digests, vp, max(0.0, duration - sent_t), local))
    except _Stopped:
        raise
    except VmatchError as e:
        emit(_Failed(idx, str(e)))
    except (OSError, MemoryError) as e:  # a file vanishing mid-run, a full /tmp: per file too
        emit(_Failed(idx, f"{path}: {type(e).__name__}: {e}"))


def index_files(
    bank,
    paths: list[Path],
    embedder,
    *,
    ref_id: str | None,
    summary,
    decode: DecodeOptions = DecodeOptions(),
    options: IndexOptions = IndexOptions(),
    threads: ThreadPolicy = ThreadPolicy(),
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[str, object], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Index ``paths`` into ``bank``, each file decoded and sampled as ``decode`` says, with the
    decode workers, FFmpeg and torch threads of ``threads`` (``threads.workers`` 0: in the calling
    thread; the torch threads matter for a CPU CNN beside decode workers only); fills ``summary``
    (:class:`vmatch.pipeline.IndexSummary`). See the module docstring.
    """
    from vmatch.index import store_video

    size = tuple(embedder.spec.input_size)
    batch = batch_size_of(embedder)
    device = getattr(embedder, "device", "cpu")
    threads = dataclasses.replace(threads, cores=threads.n_cores())  # counted once for the run
    workers = threads.decode_workers(device)
    chunk_frames = int(options.chunk_frames or min(batch, 16))
    queue_chunks = int(options.queue_chunks or max(4, 2 * max(1, workers)))
    states: dict[int, _FileState] = {}
    pending: list[tuple[int, float, np.ndarray]] = []  # (file idx, time, frame) waiting for the CNN
    last_save = time.monotonic()

    adapt: Callable[[], None] = lambda: None  # set below: CNN threads by queue depth

    def flush() -> None:
        if not pending:
            return
        adapt()
        feats = embedder.embed(np.stack([f for _, _, f in pending]))
        for (i, t, _), v in zip(pending, feats):
            st = states.setdefault(i, _FileState())
            st.times.append(t)
            st.feats.append(v)
        pending.clear()

    def fail(i: int, message: str) -> None:
        states.pop(i, None)
        summary.failed.append((str(paths[i]), message))
        if on_error is not None:
            on_error(str(paths[i]), message)

    def handle(msg) -> None:
        nonlocal last_save
        if getattr(msg, "advanced", 0.0) and progress is not None:
            progress(msg.advanced)
        if isinstance(msg, _Frames):
            pending.extend(zip([msg.idx] * len(msg.times), msg.times, msg.frames))
            if len(pending) >= batch:
                flush()
            return
        flush()  # a file ends (or fails): its frames must be embedded first
        if isinstance(msg, _Failed):
            fail(msg.idx, msg.message)
            return
        st = states.pop(msg.idx, _FileState())
        from vmatch.types import VideoEmbedding

        p = paths[msg.idx]
        emb = VideoEmbedding(
            video_id=ref_id if ref_id is not None else p.stem,
            timestamps=np.asarray(st.times, np.float64),
            features=np.stack(st.feats) if st.feats else np.zeros((0, embedder.spec.dim), np.float32),
            duration=msg.duration,
            model_id=embedder.spec.model_id,
            sha256="",
            n_blank=msg.n_blank,
            local=msg.local,
        )
        try:
            emb = store_video(bank, p, emb, digests=msg.digests, fps=decode.fps, vpdq=msg.vpdq)
        except VmatchError as e:
            fail(msg.idx, str(e))
            return
        summary.videos += 1
        summary.frames += len(emb)
        summary.seconds += emb.duration
        if on_done is not None:
            on_done(str(p), emb)
        if time.monotonic() - last_save > options.save_every:
            bank.save_index()
            last_save = time.monotonic()

    opts = dict(size=size, chunk_frames=chunk_frames, vpdq=options.vpdq, device=device)
    if workers <= 0:
        for i, p in enumerate(paths):
            produce_file(i, p, handle, decode, decoder_threads=threads.decoder_threads_for(i, len(paths), 0), **opts)
        return
    cores = threads.n_cores()
    order = largest_first(paths)

    q: queue.Queue = queue.Queue(maxsize=queue_chunks)
    stop = threading.Event()

    def emit(msg) -> None:
        while True:
            if stop.is_set():
                raise _Stopped
            try:
                q.put(msg, timeout=_POLL)
                return
            except queue.Full:
                continue

    def run(i: int, p: Path, rank: int) -> None:
        try:
            produce_file(i, p, emit, decode, decoder_threads=threads.decoder_threads_for(rank, len(paths), workers),
                         **opts)
        except _Stopped:
            pass
        except BaseException as e:  # a bug in a worker must not hang the run: report it per file
            try:
                emit(_Failed(i, f"{p}: internal error in decode worker: {type(e).__name__}: {e}"))
            except _Stopped:
                pass

    low: int | None = None
    if str(device).startswith("cpu"):
        low = int(threads.cnn_threads_low())
    threads_ctx = torch_threads(low) if low is not None else contextlib.nullcontext()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vmatch-decode")
    try:
        for rank, i in enumerate(order):
            pool.submit(run, i, paths[i], rank)
        finished = 0
        with threads_ctx as request:
            if low is not None and threads.cnn_threads is None and cores > low:
                current = [low]

                def adapt_threads() -> None:
                    want = cores if q.full() else low  # workers blocked: the CNN is the bottleneck
                    if want != current[0]:
                        request.set(want)
                        current[0] = want

                adapt = adapt_threads
            while finished < len(paths):
                msg = q.get()
                handle(msg)
                if isinstance(msg, (_Done, _Failed)):
                    finished += 1
                elif q.empty():
                    flush()  # nothing else ready: do not let frames wait for a full batch
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
