"""The prime-order group of the private mode: the ed25519 subgroup of order L, through libsodium.

Where it sits: the primitive under :mod:`vmatch.private.table` (blinding) and
:mod:`vmatch.private.voucher` / :mod:`vmatch.private.server` (the PSI key agreement).

Every operation is libsodium's (the PyNaCl binding ``nacl.bindings``): scalar reduction,
scalar multiplication without clamping, point addition, point validation. Hash-to-group is the
random-oracle construction of RFC 9380 in spirit — two independent Elligator 2 maps added — with
``crypto_core_ed25519_from_uniform`` as the map (its output is in the prime-order subgroup).
Points are 32-byte compressed encodings; scalars 32-byte little-endian integers mod L.
"""

from __future__ import annotations

import hashlib
import os

from vmatch.errors import UsageError

POINT_BYTES = 32
SCALAR_BYTES = 32
_DOMAIN = b"vmatch-psi-v1 hash-to-group"


def _nacl():
    try:
        from nacl import bindings
    except ImportError:  # pragma: no cover - depends on the install
        raise UsageError("the private mode needs PyNaCl (libsodium): pip install 'vmatch[private]'") from None
    return bindings


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar mod L (64 random bytes reduced: bias below 2^-250)."""
    nb = _nacl()
    while True:
        s = nb.crypto_core_ed25519_scalar_reduce(os.urandom(64))
        if any(s):
            return s


def hash_to_group(data: bytes, *, domain: bytes = _DOMAIN) -> bytes:
    """H(data): a point of the prime-order subgroup no one knows the discrete log of."""
    nb = _nacl()
    h = hashlib.sha512(len(domain).to_bytes(2, "big") + domain + data).digest()
    return nb.crypto_core_ed25519_add(nb.crypto_core_ed25519_from_uniform(h[:32]),
                                      nb.crypto_core_ed25519_from_uniform(h[32:]))


def mul(scalar: bytes, point: bytes) -> bytes:
    """scalar * point."""
    return _nacl().crypto_scalarmult_ed25519_noclamp(scalar, point)


def base(scalar: bytes) -> bytes:
    """scalar * G (the standard base point)."""
    return _nacl().crypto_scalarmult_ed25519_base_noclamp(scalar)


def add(p: bytes, q: bytes) -> bytes:
    return _nacl().crypto_core_ed25519_add(p, q)


def is_point(p: bytes) -> bool:
    """Whether ``p`` encodes a point of the prime-order subgroup other than the identity (and of
    no small order): what every received point must be."""
    return len(p) == POINT_BYTES and bool(_nacl().crypto_core_ed25519_is_valid_point(p))
