"""vPDQ: Meta's video hash made of the PDQ hashes of frames sampled once a second, and its match rule.

vPDQ is the video signal of Meta's ThreatExchange (``vpdq/`` in facebook/ThreatExchange, the PyPI
package ``vpdq``; its signal type in python-threatexchange is ``VPDQSignal``, ``vpdq/`` extension).
A video's hash is the list of its sampled frames, each with its 256-bit PDQ hash, PDQ quality
(0..100), frame number and timestamp. Two videos are compared as *sets* of frame hashes. This
module computes the same hashes with :func:`vmatch.signals.pdq.pdq_hash_batch` (torch, bit-exact
PDQ), reads and writes the reference's text formats, and implements the reference's match rule,
vectorised.

Hashing (:func:`hash_video`), as the reference's C++ ``hashVideoFile`` (vpdq 0.2.5,
``cpp/vpdq/cpp/hashing/filehasher.cpp``, ``hasher.h``, ``ffmpegwrapper.cpp``) does it:

* frames are decoded, converted to RGB24 at full size (``downsample_width/height`` default to 0 =
  no downscaling, mirrored here) and hashed with PDQ as they are (``pdqHash256FromFloatLuma`` on the
  whole frame);
* the reference samples by *decoded frame count*: it keeps the decoded frames whose index ``n``
  (0-based, in decoder output order: ``AVCodecContext::frame_num - 1``) is a multiple of
  ``max(1, int(seconds_per_hash * fps))``, ``fps`` being the stream's ``avg_frame_rate`` (else
  ``r_frame_rate``); ``frame_number = n`` and ``timestamp = float32(n) / float32(fps)``.

  :func:`hash_video` does exactly that by default (``sampling="vpdq"``): same frames, same frame
  numbers and timestamps, frames as stored (no rotation or pixel-aspect correction, as the
  reference), converted to RGB as the reference's ``sws_scale`` does (BT.601, ``SWS_AREA``). On the
  86 public test clips its hashes were bit-identical to ``vpdq.computeHash`` on every frame paired
  (``benchmarks/vpdq_compare.py``); only GIFs can be sampled differently, because FFmpeg versions
  disagree on their average frame rate. This matters for matching: PDQ changes by more than 31
  bits between neighbouring frames of fast motion, so a hash sampled at other instants than the
  reference's may fail to match the reference's hash of the very same file.

  ``sampling="time"`` instead takes the frame on screen every ``seconds_per_hash`` seconds of
  presentation time with :func:`vmatch.decode.iter_frames` (exactly one hash per
  ``seconds_per_hash`` whatever the frame rate, display orientation, ``skip_nonref`` available);
  ``timestamp`` is the frame's presentation time and ``frame_number`` ``round(timestamp * fps)``.
  For integer frame rates these are the reference's frames; at 29.97 fps the reference keeps
  every 29th frame (1.034 hashes a second) where this keeps one a second, and its hashes drift
  away from the reference's.

Text formats (``vpdq`` 0.2.5 and python-threatexchange, read in ``cpp/vpdq/cpp/io/vpdqio.cpp``,
``python/tests/test_util.py`` and ``threatexchange/extensions/vpdq/vpdq_util.py``):

* :func:`to_text` / :func:`from_text`: the reference's hash *file* (``vpdq-hash-video`` output, the
  ``sample-hashes/*.txt`` files), one line per frame,
  ``frame_number,quality,pdq_hex,timestamp`` with the timestamp printed ``%.3f``, e.g.
  ``25,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,1.000``.
* :func:`to_signal_str` / :func:`from_signal_str`: python-threatexchange's ``VPDQSignal`` signal
  string, ``vpdq_to_json``: a JSON array of ``"pdq_hex,quality,timestamp"`` strings
  (``VpdqCompactFeature.__str__``, timestamp formatted ``{:.3}``, i.e. 3 *significant* digits:
  ``"1.0"``, ``"12.3"``, ``"1.23e+02"``). It has no frame numbers.

Matching (:func:`match_vpdq`) follows python-threatexchange's ``match_VPDQ_hash_brute``
(``vpdq_brute_matcher.py``): each side is deduplicated by hash string (first occurrence kept), *then*
frames with quality below ``quality_threshold`` (50) are dropped; a frame matches when some frame of
the other side is within ``distance_threshold`` (31) bits, *inclusive*; ``query_match_percent`` is
``100 * matched query frames / query frames`` and ``compared_match_percent`` the same for the
compared video. ``VPDQSignal.compare_hash`` calls it a match when ``query_match_percent >= 80`` and
``compared_match_percent >= 0`` (:func:`is_match`). (The C++ ``matchTwoHashBrute`` differs: no
deduplication and a strict ``distance < 31``.)

For banks, :func:`build_binary_index` / :func:`range_search_hamming` put packed hashes
(:func:`vmatch.signals.pdq.pack_bits` layout) in a FAISS binary index and find all frames within a
radius.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vmatch.errors import DecodeError, UsageError
from vmatch.signals.pdq import HASH_BITS, HEX_LENGTH, bits_to_hex, pdq_hash_batch

if TYPE_CHECKING:  # pragma: no cover
    import faiss

__all__ = [
    "SIGNAL_TYPE",
    "VPDQ_DISTANCE_THRESHOLD",
    "VPDQ_INDEX_MATCH_THRESHOLD_PERCENT",
    "VPDQ_QUALITY_THRESHOLD",
    "VPDQ_QUERY_MATCH_THRESHOLD_PERCENT",
    "HammingRange",
    "VPDQFrame",
    "VPDQMatch",
    "build_binary_index",
    "from_signal_str",
    "from_text",
    "hash_video",
    "is_match",
    "match_vpdq",
    "pack_frames",
    "range_search_hamming",
    "read_file",
    "to_signal_str",
    "to_text",
    "write_file",
]

#: python-threatexchange's signal type name.
SIGNAL_TYPE = "vpdq"
#: Frames within this many bits match (inclusive), python-threatexchange's ``VPDQ_DISTANCE_THRESHOLD``.
VPDQ_DISTANCE_THRESHOLD = 31
#: Frames of lower PDQ quality are ignored, ``VPDQ_QUALITY_THRESHOLD``.
VPDQ_QUALITY_THRESHOLD = 50
#: ``VPDQ_QUERY_MATCH_THRESHOLD_PERCENT``: share of the query's frames that must match.
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
#: ``VPDQ_INDEX_MATCH_THRESHOLD_PERCENT``: share of the compared video's frames that must match.
VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0.0

_LOG = logging.getLogger(__name__)
_TIMESTAMP_DECIMALS = 3  # vpdqio.cpp TIMESTAMP_OUTPUT_PRECISION / VPDQ_TIMESTAMP_PRECISION
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Frames hashed together are also bounded by their pixels (RGB bytes / 3): 32 Mi pixels is 64
# frames of 720p, 16 of 1080p, 4 of 4K, about 100 MB of RGB.
_BATCH_PIXELS = 1 << 25
# Decoded frames the decoding thread may hold ahead of the hashing (bounded memory).
_PREFETCH_FRAMES = 8
# Query rows compared at once in match_vpdq: bounds the [rows, N, 4] uint64 XOR buffer to ~32 MiB.
_MATCH_CHUNK_BYTES = 1 << 25


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VPDQFrame:
    """One sampled frame of a vPDQ hash (the reference's ``vpdqFeature``).

    Attributes:
        frame_number: the frame's index among the decoded frames of the video (0-based), as the
            reference numbers it.
        hex: the frame's PDQ hash, 64 lower-case hex digits (ThreatExchange format).
        quality: PDQ quality, 0..100 (below :data:`VPDQ_QUALITY_THRESHOLD` the frame is not matched).
        timestamp: seconds from the start of the video.
    """

    frame_number: int
    hex: str
    quality: int
    timestamp: float

    def __post_init__(self) -> None:
        if not isinstance(self.frame_number, (int, np.integer)) or isinstance(self.frame_number, bool):
            raise UsageError(f"VPDQFrame: frame_number must be an integer, got {self.frame_number!r}")
        if self.frame_number < 0:
            raise UsageError(f"VPDQFrame: frame_number must be >= 0, got {self.frame_number}")
        if (
            not isinstance(self.hex, str)
            or len(self.hex) != HEX_LENGTH
            or not set(self.hex) <= _HEX_DIGITS
        ):
            raise UsageError(f"VPDQFrame: hex must be {HEX_LENGTH} hex digits, got {self.hex!r:.80}")
        if not isinstance(self.quality, (int, np.integer)) or isinstance(self.quality, bool):
            raise UsageError(f"VPDQFrame: quality must be an integer, got {self.quality!r}")
        if not 0 <= self.quality <= 100:
            raise UsageError(f"VPDQFrame: quality must be between 0 and 100, got {self.quality}")
        if (
            not isinstance(self.timestamp, (int, float, np.floating, np.integer))
            or isinstance(self.timestamp, bool)
            or not math.isfinite(self.timestamp)
            or self.timestamp < 0
        ):
            raise UsageError(f"VPDQFrame: timestamp must be a finite number >= 0, got {self.timestamp!r}")
        # Canonical types and case, so that equal frames compare equal and hash alike.
        object.__setattr__(self, "frame_number", int(self.frame_number))
        object.__setattr__(self, "hex", self.hex.lower())
        object.__setattr__(self, "quality", int(self.quality))
        object.__setattr__(self, "timestamp", float(self.timestamp))


def pack_frames(frames: Sequence[VPDQFrame]) -> np.ndarray:
    """Packed hashes ``uint8 [N, 32]`` of frames (``bytes.fromhex(hex)`` each), the layout of
    :func:`vmatch.signals.pdq.pack_bits` and of FAISS binary indexes."""
    frames = _check_frames(frames, "pack_frames")
    if not frames:
        return np.zeros((0, HASH_BITS // 8), dtype=np.uint8)
    return np.frombuffer(b"".join(bytes.fromhex(f.hex) for f in frames), dtype=np.uint8).reshape(
        len(frames), HASH_BITS // 8
    )


def _check_frames(frames: Any, name: str) -> list[VPDQFrame]:
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise UsageError(f"{name}: expected a list of VPDQFrame, got {type(frames).__name__}")
    out = list(frames)
    for i, f in enumerate(out):
        if not isinstance(f, VPDQFrame):
            raise UsageError(f"{name}: item {i} is a {type(f).__name__}, not a VPDQFrame")
    return out


# --------------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------------


def to_text(frames: Sequence[VPDQFrame]) -> str:
    """The reference's hash-file text: ``frame_number,quality,pdq_hex,timestamp`` lines (``%.3f``).

    Exactly what ``vpdq-hash-video`` writes (``outputVPDQFeatureToFile``), one ``\\n``-terminated line
    per frame; ``""`` for no frames.
    """
    frames = _check_frames(frames, "to_text")
    return "".join(
        f"{f.frame_number},{f.quality},{f.hex},{f.timestamp:.{_TIMESTAMP_DECIMALS}f}\n" for f in frames
    )


def from_text(text: str, *, source: str = "<string>") -> list[VPDQFrame]:
    """Parse the reference's hash-file text (:func:`to_text`).

    Blank lines are ignored and ``\\r\\n`` line ends accepted; hex digits may be upper case (they are
    lower-cased). Timestamps keep the file's precision (3 decimals as written by the reference).

    Raises:
        UsageError: a malformed line, naming ``source`` and the line number (from 1), e.g. a line
            of the python-threatexchange form ``hex,quality,timestamp`` (read that with
            :func:`from_signal_str`).
    """
    if not isinstance(text, str):
        raise UsageError(f"{source}: expected vPDQ text (str), got {type(text).__name__}")
    frames: list[VPDQFrame] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            hint = (
                "; this looks like python-threatexchange's 'hex,quality,timestamp' form"
                if len(parts) == 3
                else ""
            )
            raise UsageError(
                f"{source}: line {lineno}: expected 4 comma-separated fields "
                f"'frame_number,quality,pdq_hex,timestamp', got {len(parts)}{hint}: {line[:120]!r}"
            )
        frames.append(_parse_fields(parts[0], parts[2], parts[1], parts[3], f"{source}: line {lineno}"))
    return frames


def _parse_fields(number: str | int, hex_str: str, quality: str, timestamp: str, where: str) -> VPDQFrame:
    try:
        n = int(number)
    except ValueError:
        raise UsageError(f"{where}: frame number {number!r} is not an integer") from None
    if n < 0:
        raise UsageError(f"{where}: frame number {n} is negative")
    if len(hex_str) != HEX_LENGTH or not set(hex_str) <= _HEX_DIGITS:
        raise UsageError(f"{where}: PDQ hash {hex_str[:80]!r} is not {HEX_LENGTH} hex digits")
    try:
        q = int(quality)
    except ValueError:
        raise UsageError(f"{where}: quality {quality!r} is not an integer") from None
    if not 0 <= q <= 100:
        raise UsageError(f"{where}: quality {q} is outside 0..100")
    try:
        t = float(timestamp)
    except ValueError:
        raise UsageError(f"{where}: timestamp {timestamp!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise UsageError(f"{where}: timestamp {timestamp!r} must be a finite number >= 0")
    return VPDQFrame(frame_number=n, hex=hex_str, quality=q, timestamp=t)


def to_signal_str(frames: Sequence[VPDQFrame]) -> str:
    """python-threatexchange's ``VPDQSignal`` signal string: ``vpdq_to_json`` of the frames.

    A JSON array of ``"pdq_hex,quality,timestamp"`` strings, the timestamp formatted as
    ``VpdqCompactFeature.__str__`` does (``f"{t:.3}"``: 3 significant digits), ``json.dumps``'s
    default separators; frame numbers are not part of it.
    """
    frames = _check_frames(frames, "to_signal_str")
    return json.dumps([f"{f.hex},{f.quality},{f.timestamp:.{_TIMESTAMP_DECIMALS}}" for f in frames])


def from_signal_str(text: str, *, source: str = "<string>") -> list[VPDQFrame]:
    """Parse python-threatexchange's ``VPDQSignal`` signal string (:func:`to_signal_str`).

    An empty string is an empty hash (as ``json_to_vpdq``). Frame numbers are not stored in this
    format: the frames are numbered 0, 1, 2... in order.

    Raises:
        UsageError: not a JSON array of ``"hex,quality,timestamp"`` strings, naming ``source`` and
            the item (from 1).
    """
    if not isinstance(text, str):
        raise UsageError(f"{source}: expected a vPDQ signal string (str), got {type(text).__name__}")
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: not a vPDQ signal string (invalid JSON: {exc})") from None
    if not isinstance(items, list):
        raise UsageError(f"{source}: a vPDQ signal string is a JSON array, got {type(items).__name__}")
    frames: list[VPDQFrame] = []
    for i, item in enumerate(items):
        where = f"{source}: item {i + 1}"
        if not isinstance(item, str):
            raise UsageError(f"{where}: expected a 'hex,quality,timestamp' string, got {item!r:.80}")
        parts = item.split(",")
        if len(parts) != 3:
            raise UsageError(f"{where}: expected 'hex,quality,timestamp', got {item[:120]!r}")
        frames.append(_parse_fields(i, parts[0], parts[1], parts[2], where))
    return frames


def write_file(
    path: str | os.PathLike[str],
    frames: Sequence[VPDQFrame],
    *,
    format: Literal["text", "signal"] = "text",  # noqa: A002 - the natural name
) -> Path:
    """Write frames to ``path`` as :func:`to_text` (``"text"``, the reference's hash file) or
    :func:`to_signal_str` (``"signal"``). Returns the path. Written to a temporary file then
    renamed, so a reader never sees half a file."""
    if format not in ("text", "signal"):
        raise UsageError(f"write_file: format must be 'text' or 'signal', got {format!r}")
    content = to_text(frames) if format == "text" else to_signal_str(frames)
    from vmatch.files import write_atomic

    return write_atomic(path, content.encode("utf-8"), what="the vPDQ hash")


def read_file(path: str | os.PathLike[str]) -> list[VPDQFrame]:
    """Read a vPDQ hash written by :func:`write_file`, ``vpdq-hash-video`` or python-threatexchange.

    The format is recognised from the content: a JSON array (first non-blank character ``[``) is a
    signal string, anything else the reference's line format.

    Raises:
        DecodeError: the file is missing or unreadable (names it).
        UsageError: malformed content (names the file and the line or item).
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DecodeError(name, "does not exist; check the path") from None
    except IsADirectoryError:
        raise DecodeError(name, "is a directory, not a vPDQ hash file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not a vPDQ hash file (not UTF-8 text)") from None
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc})") from exc
    if text.lstrip().startswith("["):
        return from_signal_str(text, source=name)
    return from_text(text, source=name)


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VPDQMatch:
    """Result of :func:`match_vpdq` (python-threatexchange's ``VPDQMatchResult`` plus the counts).

    Attributes:
        query_match_percent: 100 * ``n_query_matched`` / ``n_query`` (0.0 when ``n_query`` is 0).
        compared_match_percent: 100 * ``n_compared_matched`` / ``n_compared`` (0.0 when 0).
        n_query: query frames compared (distinct hashes of quality >= the threshold).
        n_compared: compared (reference) frames compared, likewise.
        n_query_matched: query frames with a compared frame within the distance.
        n_compared_matched: compared frames with a query frame within the distance.
    """

    query_match_percent: float
    compared_match_percent: float
    n_query: int = 0
    n_compared: int = 0
    n_query_matched: int = 0
    n_compared_matched: int = 0


def _filtered(frames: Sequence[VPDQFrame], quality_threshold: int) -> list[VPDQFrame]:
    """python-threatexchange's ``quality_filter(dedupe(frames), quality_threshold)``: first occurrence of
    each hash kept, then frames below the quality threshold dropped (in that order)."""
    seen: set[str] = set()
    unique: list[VPDQFrame] = []
    for f in frames:
        if f.hex not in seen:
            seen.add(f.hex)
            unique.append(f)
    return [f for f in unique if f.quality >= quality_threshold]


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """Number of set bits along the last axis of a uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].sum(axis=-1, dtype=np.int32)


def _match_flags(a: np.ndarray, b: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """For packed hashes ``a [N, 32]`` and ``b [M, 32]``: (rows of ``a`` with some row of ``b``
    within ``threshold`` bits, rows of ``b`` with some row of ``a`` within it)."""
    a64 = np.ascontiguousarray(a).view(np.uint64)
    b64 = np.ascontiguousarray(b).view(np.uint64)
    a_hit = np.zeros(len(a64), dtype=bool)
    b_hit = np.zeros(len(b64), dtype=bool)
    if len(a64) == 0 or len(b64) == 0:
        return a_hit, b_hit
    rows = max(1, _MATCH_CHUNK_BYTES // (len(b64) * 32))
    for start in range(0, len(a64), rows):
        block = a64[start : start + rows]
        close = _popcount_rows(block[:, None, :] ^ b64[None, :, :]) <= threshold
        a_hit[start : start + rows] = close.any(axis=1)
        b_hit |= close.any(axis=0)
    return a_hit, b_hit


def match_vpdq(
    query: Sequence[VPDQFrame],
    reference: Sequence[VPDQFrame],
    *,
    distance_threshold: int = VPDQ_DISTANCE_THRESHOLD,
    quality_threshold: int = VPDQ_QUALITY_THRESHOLD,
) -> VPDQMatch:
    """Compare two vPDQ hashes as python-threatexchange's ``match_VPDQ_hash_brute`` does.

    Each side is deduplicated (same hex string: first occurrence kept) and then stripped of frames
    whose quality is below ``quality_threshold``. A frame matches when the other side has a frame
    at Hamming distance ``<= distance_threshold``. ``query_match_percent`` is
    ``matched * 100 / len(filtered query)``, ``compared_match_percent`` the same for ``reference``.
    Where the reference would divide by zero (no frame left on a side) the percent is 0.0.

    Vectorised with numpy on packed hashes (64-bit XOR and popcount), in chunks of bounded memory.
    """
    query = _check_frames(query, "match_vpdq")
    reference = _check_frames(reference, "match_vpdq")
    if not isinstance(distance_threshold, (int, np.integer)) or isinstance(distance_threshold, bool):
        raise UsageError(f"match_vpdq: distance_threshold must be an integer, got {distance_threshold!r}")
    if not 0 <= distance_threshold <= HASH_BITS:
        raise UsageError(f"match_vpdq: distance_threshold must be in 0..256, got {distance_threshold}")
    if not isinstance(quality_threshold, (int, np.integer)) or isinstance(quality_threshold, bool):
        raise UsageError(f"match_vpdq: quality_threshold must be an integer, got {quality_threshold!r}")
    q = _filtered(query, int(quality_threshold))
    c = _filtered(reference, int(quality_threshold))
    q_hit, c_hit = _match_flags(pack_frames(q), pack_frames(c), int(distance_threshold))
    nq_m, nc_m = int(q_hit.sum()), int(c_hit.sum())
    return VPDQMatch(
        query_match_percent=nq_m * 100 / len(q) if q else 0.0,
        compared_match_percent=nc_m * 100 / len(c) if c else 0.0,
        n_query=len(q),
        n_compared=len(c),
        n_query_matched=nq_m,
        n_compared_matched=nc_m,
    )


def is_match(
    m: VPDQMatch,
    *,
    query_match_threshold: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
    compared_match_threshold: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
) -> bool:
    """``VPDQSignal.compare_hash``'s decision: ``query_match_percent >= query_match_threshold`` and
    ``compared_match_percent >= compared_match_threshold`` (defaults 80 and 0)."""
    if not isinstance(m, VPDQMatch):
        raise UsageError(f"is_match: expected a VPDQMatch, got {type(m).__name__}")
    return bool(
        m.query_match_percent >= float(query_match_threshold)
        and m.compared_match_percent >= float(compared_match_threshold)
    )


# --------------------------------------------------------------------------------------------------
# FAISS binary index
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HammingRange:
    """Result of :func:`range_search_hamming`, FAISS's range-search layout.

    The hits of query ``i`` are ``ids[lims[i]:lims[i + 1]]`` (row numbers in the index, in the order
    added) at Hamming distances ``distances[lims[i]:lims[i + 1]]``.

    Attributes:
        lims: ``int64 [Q + 1]``.
        distances: ``int32 [lims[-1]]``.
        ids: ``int64 [lims[-1]]``.
    """

    lims: np.ndarray
    distances: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(len(self.lims) - 1)

    def hits(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, distances)`` of query ``i``, sorted by distance then id."""
        if not 0 <= i < len(self):
            raise UsageError(f"HammingRange.hits: query {i} out of range 0..{len(self) - 1}")
        a, b = int(self.lims[i]), int(self.lims[i + 1])
        ids, dist = self.ids[a:b], self.distances[a:b]
        order = np.lexsort((ids, dist))
        return ids[order], dist[order]


def _check_packed(packed: Any, name: str) -> np.ndarray:
    arr = np.asarray(packed)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != HASH_BITS // 8:
        raise UsageError(
            f"{name}: expected packed hashes uint8 [N, {HASH_BITS // 8}] (pack_bits / pack_frames), "
            f"got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def build_binary_index(packed: Any) -> faiss.IndexBinaryFlat:
    """A FAISS exact binary index (``IndexBinaryFlat(256)``) holding packed hashes ``uint8 [N, 32]``.

    Row ``i`` of ``packed`` gets id ``i``. The packing is :func:`vmatch.signals.pdq.pack_bits`'s
    (= ``bytes.fromhex(hex)``), so FAISS's Hamming distances equal
    :func:`vmatch.signals.pdq.hamming` on the hex strings.
    """
    import faiss

    arr = _check_packed(packed, "build_binary_index")
    index = faiss.IndexBinaryFlat(HASH_BITS)
    if len(arr):
        index.add(arr)
    return index


def range_search_hamming(
    index: faiss.IndexBinary, queries_packed: Any, radius: int = VPDQ_DISTANCE_THRESHOLD
) -> HammingRange:
    """All indexed hashes within ``radius`` bits (inclusive, as the vPDQ rule) of each query.

    FAISS's binary range search keeps distances strictly below its radius; this passes
    ``radius + 1`` so that distance ``radius`` itself is found.
    """
    import faiss

    if not isinstance(index, faiss.IndexBinary):
        raise UsageError(f"range_search_hamming: expected a FAISS binary index, got {type(index).__name__}")
    if index.d != HASH_BITS:
        raise UsageError(f"range_search_hamming: the index holds {index.d}-bit codes, not {HASH_BITS}")
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or not 0 <= radius <= HASH_BITS:
        raise UsageError(f"range_search_hamming: radius must be an integer in 0..256, got {radius!r}")
    q = _check_packed(queries_packed, "range_search_hamming")
    if len(q) == 0 or index.ntotal == 0:
        return HammingRange(
            lims=np.zeros(len(q) + 1, dtype=np.int64),
            distances=np.zeros(0, dtype=np.int32),
            ids=np.zeros(0, dtype=np.int64),
        )
    lims, dist, ids = index.range_search(q, int(radius) + 1)
    return HammingRange(
        lims=np.asarray(lims, dtype=np.int64),
        distances=np.asarray(dist).astype(np.int32),
        ids=np.asarray(ids, dtype=np.int64),
    )
