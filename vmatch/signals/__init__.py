"""Frame signals that need no learned model: perceptual hashes computed from decoded RGB frames.

- :mod:`vmatch.signals.pdq`: Meta's PDQ 256-bit perceptual hash (and its eight dihedral variants),
  computed in batches with torch on CPU or CUDA, bit-compatible with the ThreatExchange reference
  (``pdqhash`` on PyPI).

This package imports nothing heavy; import the submodule you need, e.g.
``from vmatch.signals.pdq import pdq_hash_batch``.
"""

from __future__ import annotations

__all__ = ["pdq"]
