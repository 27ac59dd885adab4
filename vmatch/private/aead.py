"""Key derivation and authenticated encryption of the private mode (the ``cryptography`` package).

HKDF-SHA256 derives every key; ChaCha20-Poly1305 encrypts. A key derived for one ciphertext is
used for that ciphertext only, so its nonce may be fixed; the inner layer, whose key (from the
video key) serves every voucher of a video, takes a random nonce.
"""

from __future__ import annotations

import os
import struct

from vmatch.errors import UsageError

_ZERO_NONCE = bytes(12)


def _lib():
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:  # pragma: no cover - depends on the install
        raise UsageError("the private mode needs the cryptography package: pip install 'vmatch[private]'") from None
    return InvalidTag, hashes, ChaCha20Poly1305, HKDF


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    _, hashes, _, HKDF = _lib()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def outer_key(shared: bytes, *, commitment: bytes, bundle_id: bytes, index: int, slot: int, q: bytes) -> bytes:
    """The key of slot ``slot`` of voucher ``index``: from the PSI point ``shared`` (S = alpha*Q
    for the server), bound to the table, the bundle, the position and Q."""
    info = b"vmatch-psi outer" + bundle_id + struct.pack("<IB", index, slot) + q
    return hkdf(shared, salt=commitment, info=info)


def inner_key(video_key: bytes, *, bundle_id: bytes) -> bytes:
    return hkdf(video_key, salt=bundle_id, info=b"vmatch-psi inner")


def seal(key: bytes, plaintext: bytes, aad: bytes, *, nonce: bytes = _ZERO_NONCE) -> bytes:
    return _lib()[2](key).encrypt(nonce, plaintext, aad)


def open_(key: bytes, ciphertext: bytes, aad: bytes, *, nonce: bytes = _ZERO_NONCE) -> bytes | None:
    """The plaintext, or None when the tag does not verify (wrong key or altered)."""
    InvalidTag, _, ChaCha20Poly1305, _ = _lib()
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        return None


def seal_random_nonce(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + seal(key, plaintext, aad, nonce=nonce)


def open_random_nonce(key: bytes, data: bytes, aad: bytes) -> bytes | None:
    return open_(key, data[12:], aad, nonce=data[:12])
