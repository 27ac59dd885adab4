"""Exact file hashes (MD5, SHA-1, SHA-256) and validation of hash strings given by users.

Exact hashes find byte-identical copies only; they are the cheap first check before any perceptual
matching, and the form in which hash lists are often exchanged (MD5 and SHA-1 in
ThreatExchange-style signal lists, SHA-256 as vmatch's own content hash, see
:func:`vmatch.decode.sha256_file`).

:func:`file_hashes` computes all three digests in one read pass, ``chunk`` bytes at a time, so the
memory used does not depend on the file size. :func:`normalize_md5`, :func:`normalize_sha1` and
:func:`normalize_sha256` turn a user-supplied digest into the canonical lower-case hex form, or raise
:class:`vmatch.errors.UsageError` naming the value.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from vmatch.errors import DecodeError, UsageError
from vmatch.files import existing_file

__all__ = [
    "ALGORITHMS",
    "HEX_LENGTHS",
    "file_hashes",
    "normalize_hex_digest",
    "normalize_md5",
    "normalize_sha1",
    "normalize_sha256",
]

#: The digests :func:`file_hashes` computes, in the order of its result.
ALGORITHMS: tuple[str, ...] = ("md5", "sha1", "sha256")
#: Number of hex digits of each digest.
HEX_LENGTHS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64}
#: The exact-hash signal types a bank stores and matches (a query file whose digest equals a
#: reference's is that reference, whole).
EXACT_SIGNAL_TYPES: tuple[str, ...] = ("md5", "sha1")
_HEX_DIGITS = frozenset("0123456789abcdef")


def file_hashes(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> dict[str, str]:
    """MD5, SHA-1 and SHA-256 of a file's bytes, computed in one read pass.

    Args:
        path: the file to hash (any file, not only videos).
        chunk: bytes read at a time (memory bound), a positive integer.

    Returns:
        ``{"md5": ..., "sha1": ..., "sha256": ...}``, lower-case hex strings (32, 40 and 64 digits),
        the same as ``hashlib.md5(data).hexdigest()`` etc. of the whole content.

    Raises:
        UsageError: ``path`` is not a path, or ``chunk`` is not a positive integer.
        DecodeError: the file does not exist, is a directory, or cannot be read (names the file).
    """
    name = existing_file(path, caller="file_hashes")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise UsageError(f"file_hashes: chunk must be a positive number of bytes, got {chunk!r}")
    # usedforsecurity=False: these are content identifiers, and it keeps MD5 available on
    # FIPS-restricted OpenSSL builds.
    digests = {
        "md5": hashlib.md5(usedforsecurity=False),
        "sha1": hashlib.sha1(usedforsecurity=False),
        "sha256": hashlib.sha256(),
    }
    try:
        with open(name, "rb") as fh:
            while block := fh.read(chunk):
                for digest in digests.values():
                    digest.update(block)
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc}); check permissions") from exc
    return {algo: digests[algo].hexdigest() for algo in ALGORITHMS}


def normalize_hex_digest(value: Any, algorithm: str) -> str:
    """Canonical form (lower-case hex, surrounding white space removed) of a digest of ``algorithm``.

    Args:
        value: the digest as a string, e.g. ``"D41D8CD98F00B204E9800998ECF8427E"``.
        algorithm: ``"md5"``, ``"sha1"`` or ``"sha256"``.

    Raises:
        UsageError: unknown algorithm, or ``value`` is not a string of exactly the right number of
            hex digits (the message names the value).
    """
    if algorithm not in HEX_LENGTHS:
        raise UsageError(f"unknown hash algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    want = HEX_LENGTHS[algorithm]
    label = algorithm.upper().replace("SHA", "SHA-")
    if not isinstance(value, str):
        raise UsageError(
            f"{label} value must be a string of {want} hex digits, got {type(value).__name__}: {value!r:.80}"
        )
    text = value.strip().lower()
    if len(text) != want or not set(text) <= _HEX_DIGITS:
        raise UsageError(
            f"invalid {label} value {value!r:.100}: expected exactly {want} hex digits (0-9, a-f), "
            f"got {len(text)} characters"
            + ("" if set(text) <= _HEX_DIGITS else " including non-hex ones")
        )
    return text


def normalize_md5(value: Any) -> str:
    """Lower-case hex MD5 (32 digits) of a user-supplied value; :class:`UsageError` naming it otherwise."""
    return normalize_hex_digest(value, "md5")


def normalize_sha1(value: Any) -> str:
    """Lower-case hex SHA-1 (40 digits) of a user-supplied value; :class:`UsageError` naming it otherwise."""
    return normalize_hex_digest(value, "sha1")


def normalize_sha256(value: Any) -> str:
    """Lower-case hex SHA-256 (64 digits) of a user-supplied value; :class:`UsageError` otherwise."""
    return normalize_hex_digest(value, "sha256")
