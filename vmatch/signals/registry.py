"""The signal types vmatch knows, one class each, and the registry mapping their names to them.

Where it sits: the one place that says what md5, sha1, pdq, vpdq and cnn are: their names, their
roles (exact digest, hash-list line, stored in a bank), their match rules' numbers, how a value is
validated, compared and computed. The classes delegate to the code that does the work
(:mod:`vmatch.signals.exact`, :mod:`vmatch.signals.pdq`, :mod:`vmatch.signals.vpdq`,
:mod:`vmatch.signals.cnn`), imported when a method needs it, so that this module stays cheap to
import (``vmatch --help`` reads its names).

    >>> get_signal_type("pdq").normalize(" 3F" + "0" * 62).startswith("3f")
    True
    >>> signal_type_names(exact=True)
    ('md5', 'sha1')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from vmatch.errors import UsageError
from vmatch.signals import rules
from vmatch.signals.base import HashComparison, SignalType
from vmatch.signals.exact import HEX_LENGTHS, file_hashes, normalize_hex_digest

__all__ = [
    "EXACT_SIGNAL_TYPES",
    "LIST_SIGNAL_TYPES",
    "LOOKUP_SIGNAL_TYPES",
    "SIGNAL_TYPES",
    "STORED_SIGNAL_TYPES",
    "CNNSignal",
    "HashComparison",
    "MD5Signal",
    "PDQSignal",
    "SHA1Signal",
    "SignalType",
    "VPDQSignal",
    "get_signal_type",
    "list_signal_type",
    "signal_type_names",
]


class _DigestSignal(SignalType):
    """An exact digest of the file's bytes (:func:`vmatch.signals.exact.file_hashes`)."""

    exact = True
    in_lists = True
    stored = True
    #: Number of hex digits of a value.
    HEX_LENGTH: ClassVar[int] = 0

    @classmethod
    def normalize(cls, value: Any) -> str:
        """Lower-case hex of exactly :attr:`HEX_LENGTH` digits; UsageError naming the value otherwise."""
        return normalize_hex_digest(value, cls.name)

    @classmethod
    def compare(cls, a: Any, b: Any) -> HashComparison:
        """Equal digests match, with score 1 (the same bytes)."""
        same = cls.normalize(a) == cls.normalize(b)
        return HashComparison(match=same, score=1.0 if same else 0.0)

    @classmethod
    def hash_file(cls, path: str | os.PathLike[str], **options: Any) -> str:
        """The digest of a file's bytes (``options``: ``chunk``, bytes read at a time)."""
        return file_hashes(path, **options)[cls.name]


class MD5Signal(_DigestSignal):
    """MD5 of the file's bytes (ThreatExchange's ``md5`` signal type)."""

    name = "md5"
    label = "MD5"
    HEX_LENGTH = HEX_LENGTHS["md5"]


class SHA1Signal(_DigestSignal):
    """SHA-1 of the file's bytes."""

    name = "sha1"
    label = "SHA-1"
    HEX_LENGTH = HEX_LENGTHS["sha1"]


class _BinaryIndexed(SignalType):
    """Signals of 256-bit PDQ frame hashes, searched in a FAISS binary index within a radius."""

    DISTANCE_THRESHOLD: ClassVar[int] = 0
    QUALITY_THRESHOLD: ClassVar[int] = 0

    @classmethod
    def build_index(cls, packed: Any) -> Any:
        """A FAISS binary index of packed hashes ``uint8 [N, 32]`` (:func:`vmatch.signals.vpdq.build_binary_index`)."""
        from vmatch.signals.vpdq_match import build_binary_index

        return build_binary_index(packed)

    @classmethod
    def search_index(cls, index: Any, packed: Any) -> Any:
        """The indexed hashes within :attr:`DISTANCE_THRESHOLD` bits (inclusive) of each packed query
        hash, a :class:`~vmatch.signals.vpdq.HammingRange`."""
        from vmatch.signals.vpdq_match import range_search_hamming

        return range_search_hamming(index, packed, radius=cls.DISTANCE_THRESHOLD)

    @classmethod
    def searchable(cls, frames: Iterable[Any]) -> list[Any]:
        """The frames (:class:`~vmatch.signals.vpdq.VPDQFrame`) of quality >= :attr:`QUALITY_THRESHOLD`."""
        return [f for f in frames if f.quality >= cls.QUALITY_THRESHOLD]


class PDQSignal(_BinaryIndexed):
    """Image PDQ hashes from shared lists: a video matches when one of its sampled frames (any of
    the 8 dihedral variants) is within :attr:`DISTANCE_THRESHOLD` bits of a stored hash."""

    name = "pdq"
    label = "PDQ"
    in_lists = True
    stored = True
    HASH_BITS: ClassVar[int] = rules.HASH_BITS
    HEX_LENGTH: ClassVar[int] = rules.HEX_LENGTH
    DISTANCE_THRESHOLD = rules.PDQ_DISTANCE_THRESHOLD
    QUALITY_THRESHOLD = rules.PDQ_QUALITY_THRESHOLD

    @classmethod
    def normalize(cls, value: Any) -> str:
        """A PDQ hash as 64 lower-case hex digits (ThreatExchange form), else UsageError naming it."""
        text = value.strip().lower() if isinstance(value, str) else ""
        if len(text) != cls.HEX_LENGTH or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(f"invalid PDQ value {value!r:.100}: expected exactly 64 hex digits (0-9, a-f)")
        return text

    @classmethod
    def distance(cls, a: Any, b: Any) -> int:
        """Hamming distance (0..256) of two PDQ hashes."""
        return (int(cls.normalize(a), 16) ^ int(cls.normalize(b), 16)).bit_count()

    @classmethod
    def score(cls, distance: int) -> float:
        """The score of a match at ``distance`` bits: ``1 - distance / 256``."""
        return 1.0 - distance / 256.0

    @classmethod
    def compare(cls, a: Any, b: Any) -> HashComparison:
        """Within :attr:`DISTANCE_THRESHOLD` bits (inclusive) is a match."""
        d = cls.distance(a, b)
        return HashComparison(match=d <= cls.DISTANCE_THRESHOLD, score=cls.score(d), details={"distance": d})

    @classmethod
    def query_frames(cls, values: Sequence[str]) -> list[Any]:
        """Hash-list values (canonical hex) as the query frames a bank searches: frame ``i``,
        quality 100, time 0."""
        from vmatch.signals.vpdq_frames import VPDQFrame

        return [VPDQFrame(frame_number=i, hex=v, quality=100, timestamp=0.0) for i, v in enumerate(values)]

    @classmethod
    def hash_frames(cls, frames: Any, *, device: str = "cpu") -> list[tuple[str, int]]:
        """``(hex, quality)`` of RGB frames (:func:`vmatch.signals.pdq.pdq_hash_batch`)."""
        from vmatch.signals.pdq import pdq_hash_batch

        batch = pdq_hash_batch(frames, device=device)
        return [(h, int(q)) for h, q in zip(batch.hex(), batch.quality)]

    @classmethod
    def hash_file(cls, path: str | os.PathLike[str], **options: Any) -> list[Any]:
        """The frames a video is searched with: the 8 dihedral variants of every vPDQ frame, in
        one list (:func:`vmatch.signals.vpdq.hash_video_dihedral`, ``options`` passed on)."""
        from vmatch.signals.vpdq_hash import hash_video_dihedral

        return [f for variant in hash_video_dihedral(path, **options) for f in variant]


class VPDQSignal(_BinaryIndexed):
    """vPDQ, the video hash of python-threatexchange (frames sampled once a second, compared as sets)."""

    name = "vpdq"
    label = "vPDQ"
    stored = True
    DISTANCE_THRESHOLD = rules.VPDQ_DISTANCE_THRESHOLD
    QUALITY_THRESHOLD = rules.VPDQ_QUALITY_THRESHOLD
    QUERY_MATCH_THRESHOLD_PERCENT: ClassVar[float] = rules.VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
    INDEX_MATCH_THRESHOLD_PERCENT: ClassVar[float] = rules.VPDQ_INDEX_MATCH_THRESHOLD_PERCENT
    #: Suffix of the hash files ``vmatch hash`` and ``vmatch export`` write.
    FILE_SUFFIX: ClassVar[str] = ".vpdq.txt"
    #: Suffixes a hash file's name loses to give its reference id (:meth:`ref_id_from_name`).
    NAME_SUFFIXES: ClassVar[tuple[str, ...]] = (".txt", ".vpdq", ".json")

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>") -> list[Any]:
        """Frames of a vPDQ hash in either text format, told apart by the content
        (:func:`vmatch.signals.vpdq.parse_text`); may be empty."""
        from vmatch.signals.vpdq_io import parse_text

        return parse_text(text, source=source)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> list[Any]:
        """Frames of a vPDQ hash file (:func:`vmatch.signals.vpdq.read_file`); may be empty."""
        from vmatch.signals.vpdq_io import read_file

        return read_file(path)

    @classmethod
    def normalize(cls, value: Any, *, source: str = "<string>") -> str:
        """The reference's text form (:func:`vmatch.signals.vpdq.to_text`) of a vPDQ hash given in
        either format; UsageError naming ``source`` for a malformed or empty one."""
        frames = cls.parse(value, source=source)
        if not frames:
            raise UsageError(f"{source}: no vPDQ frames in it")
        from vmatch.signals.vpdq_io import to_text

        return to_text(frames)

    @classmethod
    def score(cls, m: Any) -> float:
        """The score of a :class:`~vmatch.signals.vpdq.VPDQMatch`: the query match percent / 100."""
        return m.query_match_percent / 100.0

    @classmethod
    def compare(cls, a: Any, b: Any) -> HashComparison:
        """python-threatexchange's rule (:func:`vmatch.signals.vpdq.match_vpdq`, then ``is_match``)
        on two frame lists, ``a`` the query."""
        from vmatch.signals.vpdq_match import is_match, match_vpdq

        m = match_vpdq(a, b)
        details = {"query_match_percent": m.query_match_percent, "compared_match_percent": m.compared_match_percent}
        return HashComparison(match=is_match(m), score=cls.score(m), details=details)

    @classmethod
    def hash_file(cls, path: str | os.PathLike[str], **options: Any) -> list[Any]:
        """The vPDQ hash of a video file (:func:`vmatch.signals.vpdq.hash_video`, ``options`` passed on)."""
        from vmatch.signals.vpdq_hash import hash_video

        return hash_video(path, **options)

    @classmethod
    def ref_id_from_name(cls, name: str) -> str:
        """Reference id of a vPDQ hash file: its name without ``.txt`` / ``.vpdq`` / ``.json``."""
        name = Path(name).name
        for suffix in cls.NAME_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
        return name


class CNNSignal(SignalType):
    """The frame embeddings of a video as a ``.vmsig`` file (:mod:`vmatch.signals.cnn`); matched by
    aligning them against the bank's frame index, with the model's calibrated threshold
    (:mod:`vmatch.match`), not value to value. They are computed by an embedder
    (:func:`vmatch.sample.embed_video`)."""

    name = "cnn"
    label = "CNN"
    FORMAT: ClassVar[str] = rules.CNN_FORMAT
    VERSION: ClassVar[int] = rules.CNN_VERSION
    FILE_SUFFIX: ClassVar[str] = rules.CNN_SUFFIX

    @classmethod
    def parse(cls, data: bytes, *, source: str = "<bytes>") -> tuple[Any, dict]:
        """``(VideoEmbedding, header)`` of a signal file's bytes (:func:`vmatch.signals.cnn.loads`)."""
        from vmatch.signals import cnn

        return cnn.loads(data, source=source)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> tuple[Any, dict]:
        """``(VideoEmbedding, header)`` of a ``.vmsig`` file (:func:`vmatch.signals.cnn.read`)."""
        from vmatch.signals import cnn

        return cnn.read(path)

    @classmethod
    def normalize(cls, value: Any, *, source: str = "<bytes>") -> bytes:
        """The bytes of a valid signal file, unchanged; UsageError naming ``source`` otherwise."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise UsageError(f"{source}: a CNN signal is the bytes of a {cls.FILE_SUFFIX} file, got {type(value).__name__}")
        data = bytes(value)
        cls.parse(data, source=source)
        return data


#: Every signal type, by name, in the order messages list them.
SIGNAL_TYPES = MappingProxyType({t.name: t for t in (MD5Signal, SHA1Signal, PDQSignal, VPDQSignal, CNNSignal)})


def signal_type_names(
    *, exact: bool | None = None, in_lists: bool | None = None, stored: bool | None = None
) -> tuple[str, ...]:
    """Names of the signal types with these roles (``None``: either), in :data:`SIGNAL_TYPES` order."""
    want = {"exact": exact, "in_lists": in_lists, "stored": stored}
    return tuple(
        name for name, t in SIGNAL_TYPES.items() if all(v is None or getattr(t, k) == v for k, v in want.items())
    )


#: Exact file digests: a query whose digest equals a reference's is that reference, whole.
EXACT_SIGNAL_TYPES = signal_type_names(exact=True)
#: Types of the one-value-a-line hash lists (``vmatch import`` / ``export`` / ``lookup``, the service).
LIST_SIGNAL_TYPES = signal_type_names(in_lists=True)
#: Types a bank stores values of (``import`` / ``export --signal-type``).
STORED_SIGNAL_TYPES = signal_type_names(stored=True)
#: Types ``vmatch lookup --signal-type`` takes, in the order of its choices: the perceptual
#: signals richest first (cnn, the default; vpdq; pdq), then the exact digests.
LOOKUP_SIGNAL_TYPES = (*reversed(signal_type_names(exact=False)), *EXACT_SIGNAL_TYPES)


def get_signal_type(name: str) -> type[SignalType]:
    """The signal type called ``name``; UsageError naming the valid ones otherwise."""
    t = SIGNAL_TYPES.get(name) if isinstance(name, str) else None
    if t is None:
        raise UsageError(f"unknown signal type {name!r}; expected one of {', '.join(SIGNAL_TYPES)}")
    return t


def list_signal_type(name: str) -> type[SignalType]:
    """The signal type of a hash-list value (md5, sha1, pdq); UsageError naming the valid ones
    otherwise (the bank's message for hashes it cannot store as list hashes)."""
    t = SIGNAL_TYPES.get(name) if isinstance(name, str) else None
    if t is None or not t.in_lists:
        raise UsageError(f"unsupported hash signal type {name!r}; use one of {', '.join(LIST_SIGNAL_TYPES)}")
    return t
