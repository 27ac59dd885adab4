"""Tests of vmatch.signals.exact: one-pass MD5/SHA-1/SHA-256 of files, validation of digest strings."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from vmatch.errors import DecodeError, UsageError
from vmatch.signals.exact import (
    ALGORITHMS,
    file_hashes,
    normalize_hex_digest,
    normalize_md5,
    normalize_sha1,
    normalize_sha256,
)


def _expected(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


_SIZES = [1, 7, 4095, 4096, 4097, 3 * 4096 + 5, 1 << 20]


# Byte-at-a-time reads (chunk 1) only on small files: on large ones they are slow and add nothing.
@pytest.mark.parametrize(
    ("size", "chunk"),
    [(size, chunk) for chunk in (1, 4096, 1 << 20) for size in _SIZES if not (chunk == 1 and size > 5000)],
)
def test_file_hashes_match_hashlib(tmp_path: Path, size: int, chunk: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    got = file_hashes(path, chunk=chunk)
    assert list(got) == list(ALGORITHMS)
    assert got == _expected(data)
    assert file_hashes(str(path)) == got  # str paths too, default chunk


def test_file_hashes_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert file_hashes(path) == _expected(b"")


def test_file_hashes_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(DecodeError, match="nope.mp4.*does not exist"):
        file_hashes(missing)
    with pytest.raises(DecodeError, match="is a directory"):
        file_hashes(tmp_path)
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(UsageError, match="chunk"):
            file_hashes(path, chunk=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="file path"):
        file_hashes(123)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_file_hashes_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"abc")
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="secret.*cannot read"):
            file_hashes(path)
    finally:
        path.chmod(0o600)


def test_normalize_accepts_and_lowercases() -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    sha1 = hashlib.sha1(b"x").hexdigest()
    sha256 = hashlib.sha256(b"x").hexdigest()
    assert normalize_md5(md5.upper()) == md5
    assert normalize_md5(f"  {md5}\n") == md5
    assert normalize_sha1(sha1.upper()) == sha1
    assert normalize_sha256(sha256) == sha256
    assert normalize_hex_digest(sha1, "sha1") == sha1


@pytest.mark.parametrize(
    ("func", "value"),
    [
        (normalize_md5, "d41d8cd98f00b204e9800998ecf8427"),  # 31 digits
        (normalize_md5, "d41d8cd98f00b204e9800998ecf8427e0"),  # 33
        (normalize_md5, "g41d8cd98f00b204e9800998ecf8427e"),  # non-hex
        (normalize_md5, hashlib.sha1(b"").hexdigest()),  # a SHA-1 is not an MD5
        (normalize_sha1, hashlib.md5(b"").hexdigest()),
        (normalize_sha1, "da39a3ee5e6b4b0d3255bfef95601890afd8070-"),
        (normalize_sha1, ""),
        (normalize_sha256, hashlib.sha1(b"").hexdigest()),
    ],
)
def test_normalize_refuses_bad_values(func, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as info:
        func(value)
    assert repr(value)[:40] in str(info.value)  # the message names the value


def test_normalize_refuses_non_strings_and_unknown_algorithms() -> None:
    with pytest.raises(UsageError, match="MD5 value must be a string"):
        normalize_md5(12345)
    with pytest.raises(UsageError, match="SHA-1 value must be a string"):
        normalize_sha1(b"da39a3ee5e6b4b0d3255bfef95601890afd80709")
    with pytest.raises(UsageError, match="unknown hash algorithm"):
        normalize_hex_digest("00", "crc32")
