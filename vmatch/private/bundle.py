"""The voucher bundle a device sends for one video, and the frame payload it protects.

Where it sits: device (:mod:`vmatch.private.voucher`) -> **bundle bytes** -> server
(:mod:`vmatch.private.server`).

File (``.vmpv``)::

    b"VMPV\\x01\\n" | u32 header length | JSON header
    | vouchers x VOUCHER_BYTES | per blob: u32 length, bytes | SHA-256 of all before

A voucher is ``N_HASHES`` slots, each ``Q (32 bytes) | outer ciphertext``: the device does not
know which of its key's cuckoo positions holds the key (if any), so it encrypts the same outer
plaintext once per position; the server can open at most the one whose table entry was
``alpha * H(key)``. Outer plaintext: ``share index u32 | share 16 bytes | inner ciphertext``;
the inner ciphertext (nonce | ChaCha20-Poly1305 of ``blob index u32 | frame key 32 bytes``)
opens only with the video key that the shares rebuild. A blob is the frame payload (time,
descriptor, local features) under its frame key, padded to a multiple of BLOB_PAD bytes.

The trailing digest makes a corrupted or altered bundle fail loudly instead of silently
matching nothing; the AEAD tags bind every ciphertext to the bundle id, the table commitment and
its voucher index, so vouchers cannot be moved between bundles or positions.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np

from vmatch.private.table import N_HASHES, PrivateError

MAGIC = b"VMPV\x01\n"
FORMAT = "vmatch-private-vouchers"
VERSION = 1
SHARE_BYTES = 4 + 16
INNER_PLAIN = 4 + 32
INNER_BYTES = 12 + INNER_PLAIN + 16
OUTER_PLAIN = SHARE_BYTES + INNER_BYTES
OUTER_BYTES = OUTER_PLAIN + 16
SLOT_BYTES = 32 + OUTER_BYTES
VOUCHER_BYTES = N_HASHES * SLOT_BYTES
BLOB_PAD = 4096
MAX_BLOB_BYTES = 1 << 20
MAX_VOUCHERS = 4_000_000


@dataclass(frozen=True)
class Bundle:
    bundle_id: bytes  # 16 random bytes
    table_commitment: str
    vouchers: list[bytes]
    blobs: list[bytes]

    def header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "bundle_id": self.bundle_id.hex(),
                "table_commitment": self.table_commitment, "vouchers": len(self.vouchers),
                "blobs": len(self.blobs), "voucher_bytes": VOUCHER_BYTES}

    def to_bytes(self) -> bytes:
        h = json.dumps(self.header(), sort_keys=True).encode("utf-8")
        parts = [MAGIC, struct.pack("<I", len(h)), h, *self.vouchers]
        for b in self.blobs:
            parts += [struct.pack("<I", len(b)), b]
        body = b"".join(parts)
        return body + hashlib.sha256(body).digest()


def loads_bundle(data: bytes, *, source: str = "<vouchers>") -> Bundle:
    """Parse a bundle; a wrong magic, digest, size or count raises :class:`PrivateError` naming ``source``."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4 + 32:
        raise PrivateError(f"{source}: not a vmatch voucher bundle (bad magic); make one with `vmatch private voucher`")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise PrivateError(f"{source}: the bundle's digest does not match its content: it was altered or "
                           "truncated on the way; ask the device to send it again")
    (n,) = struct.unpack_from("<I", body, len(MAGIC))
    pos = len(MAGIC) + 4
    try:
        h = json.loads(body[pos : pos + n])
        if h.get("format") != FORMAT:
            raise ValueError("not a voucher bundle")
        if h.get("version", 0) > VERSION:
            raise ValueError(f"format version {h.get('version')} is newer than this vmatch")
        bundle_id = bytes.fromhex(h["bundle_id"])
        nv, nb = int(h["vouchers"]), int(h["blobs"])
        if len(bundle_id) != 16 or int(h["voucher_bytes"]) != VOUCHER_BYTES or not 0 <= nv <= MAX_VOUCHERS \
                or not 0 <= nb <= nv:
            raise ValueError("inconsistent sizes")
        commitment = str(h["table_commitment"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise PrivateError(f"{source}: malformed bundle header ({e})") from None
    pos += n
    if len(body) < pos + nv * VOUCHER_BYTES:
        raise PrivateError(f"{source}: truncated: {nv} vouchers announced")
    vouchers = [body[pos + i * VOUCHER_BYTES : pos + (i + 1) * VOUCHER_BYTES] for i in range(nv)]
    pos += nv * VOUCHER_BYTES
    blobs = []
    for i in range(nb):
        if len(body) < pos + 4:
            raise PrivateError(f"{source}: truncated at blob {i}")
        (m,) = struct.unpack_from("<I", body, pos)
        if m > MAX_BLOB_BYTES or len(body) < pos + 4 + m:
            raise PrivateError(f"{source}: blob {i} of {m} bytes is too large or truncated")
        blobs.append(body[pos + 4 : pos + 4 + m])
        pos += 4 + m
    if pos != len(body):
        raise PrivateError(f"{source}: {len(body) - pos} bytes after the last blob")
    return Bundle(bundle_id, commitment, vouchers, blobs)


# ---------------------------------------------------------------------- frame payload
def encode_frame(time_s: float, feature: np.ndarray, local_arrays: dict[str, np.ndarray]) -> bytes:
    """One frame's payload (time, float16 descriptor, its local-feature arrays), padded."""
    parts = [struct.pack("<dH", float(time_s), feature.shape[0]), np.asarray(feature, "<f2").tobytes()]
    names = sorted(local_arrays)
    parts.append(struct.pack("<H", len(names)))
    for name in names:
        a = np.ascontiguousarray(local_arrays[name])
        nm = name.encode("ascii")
        dt = a.dtype.str.encode("ascii")
        parts += [struct.pack("<BB", len(nm), len(dt)), nm, dt, struct.pack("<B", a.ndim),
                  struct.pack(f"<{a.ndim}I", *a.shape), a.tobytes()]
    payload = b"".join(parts)
    total = 4 + len(payload)
    padded = -(-total // BLOB_PAD) * BLOB_PAD
    return struct.pack("<I", len(payload)) + payload + bytes(padded - total)


_ALLOWED_DTYPES = {"<i4", "<u2", "|u1"}


def decode_frame(data: bytes, *, source: str) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """Inverse of :func:`encode_frame` (sizes checked, no pickle, no allocation past the blob)."""
    try:
        (n,) = struct.unpack_from("<I", data, 0)
        p = memoryview(data)[4 : 4 + n]
        if len(p) != n:
            raise ValueError("payload length")
        t, dim = struct.unpack_from("<dH", p, 0)
        off = 10
        feat = np.frombuffer(p[off : off + 2 * dim], "<f2").astype(np.float32)
        off += 2 * dim
        if feat.shape[0] != dim or not np.isfinite(t):
            raise ValueError("descriptor")
        (k,) = struct.unpack_from("<H", p, off)
        off += 2
        arrays = {}
        for _ in range(k):
            ln, ld = struct.unpack_from("<BB", p, off)
            off += 2
            name = bytes(p[off : off + ln]).decode("ascii")
            dt = bytes(p[off + ln : off + ln + ld]).decode("ascii")
            off += ln + ld
            (nd,) = struct.unpack_from("<B", p, off)
            shape = struct.unpack_from(f"<{nd}I", p, off + 1)
            off += 1 + 4 * nd
            if dt not in _ALLOWED_DTYPES or nd > 2:
                raise ValueError(f"array {name}: dtype {dt}")
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
            if off + size > len(p):
                raise ValueError(f"array {name}: truncated")
            arrays[name] = np.frombuffer(p[off : off + size], dt).reshape(shape).copy()
            off += size
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise PrivateError(f"{source}: malformed frame payload ({e})") from None
    return float(t), feat, arrays
