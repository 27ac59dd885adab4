"""Signals of a video other than the pipeline's stages: what is matched, and how each is computed.

- :mod:`vmatch.signals.registry`: the signal types (md5, sha1, pdq, vpdq, cnn), one class each with
  its role, match rule, validation and hashing, and ``SIGNAL_TYPES`` / ``get_signal_type(name)``;
  :mod:`vmatch.signals.base` is their base class, :mod:`vmatch.signals.rules` their numbers.
- :mod:`vmatch.signals.exact`: MD5 / SHA-1 / SHA-256 of a file in one read pass.
- :mod:`vmatch.signals.pdq`: Meta's PDQ 256-bit perceptual hash (and its eight dihedral variants),
  computed in batches with torch on CPU or CUDA, bit-compatible with the ThreatExchange reference
  (``pdqhash`` on PyPI); its parts are ``pdq_bits`` (records, hex and bit helpers), ``pdq_exact``
  (the bit-exact core) and ``pdq_fast`` (the matrix fast path).
- :mod:`vmatch.signals.vpdq`: vPDQ, the video hash made of PDQ frame hashes, and its match rule;
  its parts are ``vpdq_frames``, ``vpdq_hash``, ``vpdq_io`` and ``vpdq_match``.
- :mod:`vmatch.signals.cnn`: the CNN signal file (``.vmsig``), frame embeddings without the media.
- :mod:`vmatch.signals.hashlist`: ``<signal_type> <value> <id>`` hash lists.

This package imports nothing heavy; import the submodule you need, e.g.
``from vmatch.signals.pdq import pdq_hash_batch`` or
``from vmatch.signals.registry import get_signal_type``.
"""

from __future__ import annotations

__all__ = ["pdq"]
