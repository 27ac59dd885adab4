"""The numbers of the hash signals' formats and match rules, in one module that imports nothing.

Where it sits: at the bottom of :mod:`vmatch.signals`. The hashing and matching functions take
these as their defaults (:mod:`vmatch.signals.pdq_bits`, :mod:`vmatch.signals.vpdq_match`), and
the signal types of :mod:`vmatch.signals.registry` carry them as class attributes
(``PDQSignal.DISTANCE_THRESHOLD``...), which is how the rest of vmatch should read them. Kept free
of numpy and of the hashing code so that the registry is cheap to import (``vmatch --help``).

The vPDQ values are python-threatexchange's (``VPDQ_DISTANCE_THRESHOLD`` etc. in
``threatexchange/extensions/vpdq``); the image-PDQ values are the bank's rule for PDQ hashes from
shared lists (a video matches when one of its frames is within 31 bits, frames of quality >= 50).
"""

from __future__ import annotations

#: Number of bits of a PDQ hash.
HASH_BITS = 256
#: Length of the ThreatExchange hex form of a PDQ hash.
HEX_LENGTH = 64

#: Image PDQ (hash lists): a stored hash matches a query frame within this many bits (inclusive).
PDQ_DISTANCE_THRESHOLD = 31
#: Image PDQ: query frames of lower PDQ quality are not searched.
PDQ_QUALITY_THRESHOLD = 50

#: Frames within this many bits match (inclusive), python-threatexchange's ``VPDQ_DISTANCE_THRESHOLD``.
VPDQ_DISTANCE_THRESHOLD = 31
#: Frames of lower PDQ quality are ignored, ``VPDQ_QUALITY_THRESHOLD``.
VPDQ_QUALITY_THRESHOLD = 50
#: ``VPDQ_QUERY_MATCH_THRESHOLD_PERCENT``: share of the query's frames that must match.
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
#: ``VPDQ_INDEX_MATCH_THRESHOLD_PERCENT``: share of the compared video's frames that must match.
VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0.0

#: The CNN signal file (:mod:`vmatch.signals.cnn`): format name, version written, file suffix.
CNN_FORMAT = "vmatch-cnn-signal"
CNN_VERSION = 2
CNN_SUFFIX = ".vmsig"
