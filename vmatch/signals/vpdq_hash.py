"""vPDQ hashing of a video file: the reference's frame sampling (or a time grid), decoded in a
background thread and hashed with PDQ in batches.

Where it sits: decode (PyAV, :mod:`vmatch.decode`) -> **sample and hash** ->
:class:`~vmatch.signals.vpdq_frames.VPDQFrame` list; the sampling rules are described in
:mod:`vmatch.signals.vpdq`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from vmatch.errors import DecodeError, UsageError
from vmatch.signals.pdq import bits_to_hex, pdq_hash_batch
from vmatch.signals.vpdq_frames import VPDQFrame

__all__ = ["hash_video", "hash_video_dihedral"]

# The logger of vmatch.signals.vpdq, where this code lived (log configurations name it).
_LOG = logging.getLogger("vmatch.signals.vpdq")
# Frames hashed together are also bounded by their pixels (RGB bytes / 3): 32 Mi pixels is 64
# frames of 720p, 16 of 1080p, 4 of 4K, about 100 MB of RGB.
_BATCH_PIXELS = 1 << 25
# Decoded frames the decoding thread may hold ahead of the hashing (bounded memory).
_PREFETCH_FRAMES = 8


def hash_video(
    path: str | os.PathLike[str],
    *,
    seconds_per_hash: float = 1.0,
    device: str = "cpu",
    skip_nonref: bool = False,
    batch: int = 64,
    sampling: Literal["vpdq", "time"] = "vpdq",
    threads: int = 0,
    prefetch: bool = True,
    _dihedral: bool = False,
) -> list[VPDQFrame]:
    """vPDQ hash of a video file: PDQ hash and quality of frames sampled every ``seconds_per_hash``.

    Args:
        path: the video file.
        seconds_per_hash: seconds between sampled frames (the reference's ``seconds_per_hash``,
            default 1). ``0`` hashes every frame, as in the reference.
        device: where PDQ runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        skip_nonref: let the decoder skip non-reference frames (faster; a sampled frame may be a
            neighbour of the exact one, which on fast motion can be more than 31 bits away). Only
            with ``sampling="time"``.
        batch: at most this many frames are hashed together (fewer for large frames: at most
            32 Mi pixels a batch, e.g. 16 frames of 1080p).
        sampling: ``"vpdq"`` (default): exactly the reference's frames: every
            ``max(1, int(seconds_per_hash * fps))``-th decoded frame, as stored (no rotation or
            pixel-aspect correction), so that hashes agree with ``vpdq.computeHash`` of the same
            file. ``"time"``: the frame on screen every ``seconds_per_hash`` seconds of
            presentation time (:func:`vmatch.decode.iter_frames`, display orientation). See the
            module docstring.
        threads: the decoder's thread count (0 = FFmpeg's default).
        prefetch: decode in a background thread while the previous frames are hashed (the
            decoder and torch both release the GIL). Same result either way.

    Returns:
        One :class:`VPDQFrame` per sampled frame, in order. A file damaged part way gives the
        frames decoded before the damage (a warning is logged).

    Raises:
        DecodeError: the file is not a readable video or has no decodable frame (names the file).
        UsageError: bad arguments, or an unknown or unavailable device.
    """
    sph = _check_seconds_per_hash(seconds_per_hash)
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
        raise UsageError(f"hash_video: batch must be an integer >= 1, got {batch!r}")
    if sampling not in ("vpdq", "time"):
        raise UsageError(f"hash_video: sampling must be 'vpdq' or 'time', got {sampling!r}")
    if not isinstance(skip_nonref, (bool, np.bool_)):
        raise UsageError(f"hash_video: skip_nonref must be True or False, got {skip_nonref!r}")
    if sampling == "vpdq" and skip_nonref:
        raise UsageError(
            "hash_video: skip_nonref=True needs sampling='time' (the default sampling='vpdq' counts "
            "every decoded frame, as the reference does)"
        )
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 0:
        raise UsageError(f"hash_video: threads must be an integer >= 0, got {threads!r}")

    from vmatch.decode import probe
    from vmatch.embed import resolve_device

    device = resolve_device(device)  # UsageError for an unknown or unavailable device, before decoding
    info = probe(path)  # validates the file (DecodeError naming it) and gives the frame rate
    if sampling == "vpdq":
        source: Iterator[tuple[int, float, np.ndarray]] = _vpdq_frames(
            path, seconds_per_hash=sph, threads=int(threads)
        )
    else:
        fps = float(info.fps) if info.fps and info.fps > 0 and math.isfinite(info.fps) else None
        source = _time_frames(
            path, seconds_per_hash=sph, fps=fps, skip_nonref=bool(skip_nonref), threads=int(threads)
        )
    if prefetch:
        source = _prefetch(source, _PREFETCH_FRAMES)

    n_var = 8 if _dihedral else 1
    variants: list[list[VPDQFrame]] = [[] for _ in range(n_var)]
    out = variants[0]
    pending: list[tuple[int, float, np.ndarray]] = []
    pixels = 0

    def flush() -> None:
        nonlocal pixels
        if not pending:
            return
        result = pdq_hash_batch([rgb for _, _, rgb in pending], device=device, dihedral=_dihedral)
        bits = result.bits if _dihedral else result.bits[:, None, :]
        for v in range(n_var):
            for (number, t, _), hx, q in zip(pending, bits_to_hex(bits[:, v]), result.quality):
                variants[v].append(VPDQFrame(frame_number=number, hex=hx, quality=int(q), timestamp=t))
        pending.clear()
        pixels = 0

    try:
        for item in source:
            pending.append(item)
            pixels += int(item[2].shape[0]) * int(item[2].shape[1])
            if len(pending) >= batch or pixels >= _BATCH_PIXELS:
                flush()
        flush()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if not out:  # both samplings raise for videos without frames; a safety net
        raise DecodeError(os.fspath(path), "no decodable video frames")
    return variants if _dihedral else out


def hash_video_dihedral(path: str | os.PathLike[str], **kwargs: Any) -> list[list[VPDQFrame]]:
    """The vPDQ hash of the video and of its 7 rotated/mirrored versions, in
    :data:`vmatch.signals.pdq.DIHEDRAL_NAMES` order (index 0 = :func:`hash_video`'s result).

    PDQ derives the 8 variants from one DCT, so this costs about one hash. Matching a query's 8
    variants against a bank finds copies that were flipped or rotated by multiples of 90 degrees.
    Takes the keyword arguments of :func:`hash_video`.
    """
    return hash_video(path, _dihedral=True, **kwargs)


def _check_seconds_per_hash(value: Any) -> float:
    try:
        sph = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"seconds_per_hash must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(sph) or sph < 0:
        raise UsageError(f"seconds_per_hash must be a finite number of seconds >= 0, got {value!r}")
    return sph


def _time_frames(
    path: str | os.PathLike[str],
    *,
    seconds_per_hash: float,
    fps: float | None,
    skip_nonref: bool,
    threads: int,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(frame_number, timestamp, rgb)`` of the frames on screen every ``seconds_per_hash`` seconds."""
    from vmatch.decode import iter_frames

    # seconds_per_hash = 0 means every frame: a rate far above any video's yields each frame once.
    rate = 1.0 / seconds_per_hash if seconds_per_hash > 0 else 1e6
    for t, rgb in iter_frames(path, fps=rate, size=None, skip_nonref=skip_nonref, threads=threads):
        number = int(round(t * fps)) if fps else 0
        yield number, float(t), rgb


def _reference_rate(stream: Any) -> float | None:
    """The rate the reference uses: ``avg_frame_rate``, else ``r_frame_rate`` (PyAV's ``base_rate``)."""
    for rate in (stream.average_rate, stream.base_rate):
        if rate is not None and rate.numerator > 0 and rate.denominator > 0:
            return float(rate.numerator) / float(rate.denominator)
    return None


def _vpdq_frames(
    path: str | os.PathLike[str], *, seconds_per_hash: float, threads: int
) -> Iterator[tuple[int, float, np.ndarray]]:
    """The reference's frames: every ``max(1, int(seconds_per_hash * fps))``-th decoded frame of the
    first video stream, at the stream's coded size, converted to RGB24 as the reference's swscale
    call does; ``timestamp = float32(n) / float32(fps)``."""
    import av
    from av.video.reformatter import VideoReformatter

    name = os.fspath(path)
    reformatter = VideoReformatter()
    index = 0
    try:
        with av.open(name, mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise DecodeError(name, "has no video stream")
            stream = container.streams.video[0]
            fps = _reference_rate(stream)
            if fps is None:
                raise DecodeError(
                    name,
                    "the video stream declares no frame rate, which the reference's sampling needs; "
                    "use sampling='time'",
                )
            frame_mod = max(1, int(seconds_per_hash * fps))  # C++ static_cast<int>: truncation
            fps32 = np.float32(fps)
            ctx = stream.codec_context
            if threads:
                ctx.thread_count = threads
            ctx.thread_type = "AUTO"
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError, EOFError, MemoryError) as exc:
                    if index == 0:
                        raise
                    _LOG.warning(
                        "%s: decoding stopped after %d frames (%s); the file is damaged, hashing "
                        "the frames decoded before",
                        name,
                        index,
                        " ".join(str(exc).split()),
                    )
                    break
                if index % frame_mod == 0:
                    w, h = (width, height) if width and height else (frame.width, frame.height)
                    rgb = reformatter.reformat(
                        frame,
                        width=w,
                        height=h,
                        format="rgb24",
                        interpolation="AREA",
                        **_legacy_swscale_color(frame.format.name),
                    ).to_ndarray()
                    yield index, float(np.float32(index) / fps32), rgb
                index += 1
    except DecodeError:
        raise
    except (av.error.FFmpegError, OSError, EOFError, MemoryError) as exc:
        raise DecodeError(name, f"decoding failed ({' '.join(str(exc).split())}); the file is corrupt") from exc
    if index == 0:
        raise DecodeError(name, "no decodable video frames")


def _legacy_swscale_color(pix_fmt: str) -> dict[str, str]:
    """Colour options that make PyAV's ``sws_scale_frame`` convert like the reference's legacy
    ``sws_getContext`` + ``sws_scale``, which ignores the frame's colour tags: BT.601 coefficients,
    full range for the ``yuvj*`` formats only. Non-YUV sources are left alone."""
    if not pix_fmt.startswith("yuv"):
        return {}
    return {
        "src_colorspace": "ITU601",
        "dst_colorspace": "ITU601",
        "src_color_range": "JPEG" if pix_fmt.startswith("yuvj") else "MPEG",
    }


class _Prefetcher:
    """Runs an iterator in a daemon thread, ``size`` items ahead; re-raises its exceptions.

    :meth:`close` stops the thread (it checks between items) and closes the source iterator there.
    """

    def __init__(self, source: Iterator[Any], size: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._run, name="vpdq-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(("item", item)):
                    break
            else:
                self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            self._put(("error", exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, value = self._queue.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _prefetch(source: Iterator[Any], size: int) -> Any:
    return _PrefetchIter(_Prefetcher(source, size))


class _PrefetchIter:
    """Iterator over a :class:`_Prefetcher` with a ``close`` method that stops the thread."""

    def __init__(self, prefetcher: _Prefetcher) -> None:
        self._prefetcher = prefetcher
        self._it = iter(prefetcher)

    def __iter__(self) -> _PrefetchIter:
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        self._prefetcher.close()
