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

The code is in :mod:`vmatch.signals.vpdq_frames` (the frame record), :mod:`vmatch.signals.vpdq_hash`
(hashing a video), :mod:`vmatch.signals.vpdq_io` (the text formats), :mod:`vmatch.signals.vpdq_match`
(the match rule, the FAISS helpers) and the numbers in :mod:`vmatch.signals.rules`; this module
re-exports their public names.
"""

from __future__ import annotations

from vmatch.signals.registry import VPDQSignal
from vmatch.signals.rules import (
    VPDQ_DISTANCE_THRESHOLD,
    VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
    VPDQ_QUALITY_THRESHOLD,
    VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
)
from vmatch.signals.vpdq_frames import VPDQFrame, pack_frames
from vmatch.signals.vpdq_hash import hash_video, hash_video_dihedral
from vmatch.signals.vpdq_io import (
    from_signal_str,
    from_text,
    parse_text,
    read_file,
    to_signal_str,
    to_text,
    write_file,
)
from vmatch.signals.vpdq_match import (
    HammingRange,
    VPDQMatch,
    build_binary_index,
    is_match,
    match_vpdq,
    range_search_hamming,
)

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
    "hash_video_dihedral",
    "is_match",
    "match_vpdq",
    "pack_frames",
    "parse_text",
    "range_search_hamming",
    "read_file",
    "to_signal_str",
    "to_text",
    "write_file",
]

#: python-threatexchange's signal type name (:attr:`VPDQSignal.name <vmatch.signals.registry.VPDQSignal>`).
SIGNAL_TYPE = VPDQSignal.name
