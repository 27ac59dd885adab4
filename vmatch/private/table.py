"""The blinded bank: the server's secret, its published cuckoo table of blinded match keys.

Where it sits: bank -> keys (:mod:`vmatch.private.lsh`) -> **table** -> the device's vouchers.

The server holds a secret scalar ``alpha`` (``<bank>/private/secret.key``, mode 0600) and
publishes ``PK = alpha * G``. For every distinct key ``x`` of the bank's reference frames it
computes the blinded element ``alpha * H(x)`` and places it in a cuckoo table of ``slots``
entries at one of the positions ``h_j(x)``, j < 3 (public hashes with a published salt); every
other slot holds a random group element, indistinguishable from a blinded key without
``alpha`` (DDH). The device, knowing only the table, its key ``y`` and ``PK``, cannot tell
whether ``y`` is banked, and the table reveals nothing about the keys but their count.

File (``.vmpt``)::

    b"VMPT\\x01\\n" | u32 header length | JSON header | slots x 32-byte points

The commitment is the SHA-256 of the whole file: a device that is given it (e.g. from a
transparency log) checks that it received the table everyone received, and every voucher names
it, so the server knows which table a voucher was made against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from vmatch.errors import UsageError
from vmatch.private import group
from vmatch.private.lsh import KeyParams, reference_keys

MAGIC = b"VMPT\x01\n"
FORMAT = "vmatch-private-table"
VERSION = 1
N_HASHES = 3
MAX_TABLE_BYTES = 1 << 34


class PrivateError(UsageError):
    """A private-mode input is malformed, tampered with, replayed or made for another table."""


@dataclass(frozen=True)
class SyntheticParams:
    """How the device pads a bundle with synthetic frames (published, so every device does the same).

    A bundle gets ``k ~ Poisson(floor + per_frame * n)`` synthetic frames beside its ``n`` real
    ones; each opens like a matching frame (``open_counts[c-1]`` is the chance that ``c`` of its
    vouchers open) but carries a share of nothing and a blob of random bytes. So the number of
    vouchers the server can open says little about how many real frames matched below the
    threshold."""

    floor: float = 2.0
    per_frame: float = 0.05
    open_counts: tuple[float, ...] = (0.45, 0.25, 0.15, 0.1, 0.05)

    def __post_init__(self) -> None:
        if not (0 <= self.floor <= 1000 and 0 <= self.per_frame <= 10):
            raise UsageError(f"synthetic floor/per_frame out of range: {self.floor}, {self.per_frame}")
        p = tuple(float(x) for x in self.open_counts)
        if not p or any(x < 0 for x in p) or abs(sum(p) - 1.0) > 1e-6:
            raise UsageError(f"synthetic open_counts must be probabilities summing to 1, got {p}")
        object.__setattr__(self, "open_counts", p)


@dataclass(frozen=True)
class TableHeader:
    table_version: int
    model_id: str
    model_name: str
    keys: KeyParams
    slots: int
    salt: str  # hex
    public_key: str  # hex of alpha * G
    threshold: int
    synthetic: SyntheticParams
    n_keys: int
    created_at: str

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["keys"] = self.keys.to_dict()
        d["synthetic"]["open_counts"] = list(self.synthetic.open_counts)
        return {"format": FORMAT, "version": VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict, *, source: str) -> "TableHeader":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise PrivateError(f"{source}: not a vmatch private table")
        if d.get("version", 0) > VERSION:
            raise PrivateError(f"{source}: table format version {d.get('version')} is newer than this vmatch; upgrade")
        try:
            syn = d["synthetic"]
            h = cls(table_version=int(d["table_version"]), model_id=str(d["model_id"]),
                    model_name=str(d["model_name"]), keys=KeyParams.from_dict(d["keys"]), slots=int(d["slots"]), salt=str(d["salt"]),
                    public_key=str(d["public_key"]), threshold=int(d["threshold"]),
                    synthetic=SyntheticParams(float(syn["floor"]), float(syn["per_frame"]), tuple(syn["open_counts"])),
                    n_keys=int(d["n_keys"]), created_at=str(d["created_at"]))
            bytes.fromhex(h.salt)
            pk = bytes.fromhex(h.public_key)
        except (KeyError, TypeError, ValueError) as e:
            raise PrivateError(f"{source}: malformed table header ({e})") from None
        if not group.is_point(pk) or h.slots < 1 or not 1 <= h.threshold <= 1000:
            raise PrivateError(f"{source}: invalid table header (public key, slots or threshold)")
        return h


@dataclass(frozen=True)
class Table:
    """A published table: header, entries (slot -> 32-byte point) and the commitment."""

    header: TableHeader
    entries: bytes
    commitment: str

    def entry(self, slot: int) -> bytes:
        return self.entries[32 * slot : 32 * slot + 32]

    def positions(self, key: bytes) -> list[int]:
        return positions(bytes.fromhex(self.header.salt), key, self.header.slots)

    def to_bytes(self) -> bytes:
        return _encode(self.header, self.entries)


def positions(salt: bytes, key: bytes, slots: int) -> list[int]:
    """The ``N_HASHES`` cuckoo positions of ``key`` (public: the device computes them too)."""
    out = []
    for j in range(N_HASHES):
        d = hashlib.sha256(salt + bytes([j]) + key).digest()
        out.append(int.from_bytes(d[:8], "little") % slots)
    return out


def _encode(header: TableHeader, entries: bytes) -> bytes:
    h = json.dumps(header.to_dict(), sort_keys=True).encode("utf-8")
    return MAGIC + struct.pack("<I", len(h)) + h + entries


def loads_table(data: bytes, *, source: str = "<table>", commitment: str | None = None) -> Table:
    """Parse and check a table; with ``commitment``, also that it is the committed one."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise PrivateError(f"{source}: not a vmatch private table (bad magic); get it with `vmatch private publish`")
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = TableHeader.from_dict(json.loads(data[start : start + n]), source=source)
    except (ValueError, UnicodeDecodeError) as e:
        raise PrivateError(f"{source}: unreadable table header ({e})") from None
    entries = data[start + n :]
    if len(entries) != 32 * header.slots:
        raise PrivateError(f"{source}: {len(entries)} bytes of entries for {header.slots} slots: truncated or padded")
    digest = hashlib.sha256(data).hexdigest()
    if commitment is not None and digest != commitment.strip().lower():
        raise PrivateError(f"{source}: its commitment {digest} is not the expected {commitment}: "
                           "a different or altered table; do not make vouchers against it")
    return Table(header, entries, digest)


def read_table(path: str | os.PathLike, *, commitment: str | None = None) -> Table:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise PrivateError(f"{p}: {size} bytes is larger than any table this vmatch reads")
        data = p.read_bytes()
    except OSError as e:
        raise PrivateError(f"{p}: cannot read the table: {e.strerror or e}") from None
    return loads_table(data, source=str(p), commitment=commitment)


# ---------------------------------------------------------------------- building (server)
def build_table(keys: set[bytes], alpha: bytes, *, params: KeyParams, model_id: str, model_name: str, version: int,
                threshold: int,
                synthetic: SyntheticParams = SyntheticParams(), load: float = 0.8, progress=None) -> Table:
    """Blind every key with ``alpha`` and lay the elements out in a cuckoo table."""
    n = len(keys)
    slots = max(16, math.ceil(n / load))
    keys_sorted = sorted(keys)
    for attempt in range(12):
        salt = os.urandom(16)
        layout = _cuckoo(keys_sorted, salt, slots)
        if layout is not None:
            break
        slots = math.ceil(slots * 1.1)
    else:  # pragma: no cover - a load of 0.8 with 3 hashes fails with negligible chance
        raise PrivateError(f"cannot lay {n} keys out in a cuckoo table")
    pk = group.base(alpha)
    out = bytearray(32 * slots)
    for s in range(slots):
        k = layout[s]
        out[32 * s : 32 * s + 32] = group.mul(alpha, group.hash_to_group(k)) if k is not None else \
            group.base(group.random_scalar())
        if progress is not None and s % 4096 == 0:
            progress(s, slots)
    header = TableHeader(table_version=version, model_id=model_id, model_name=model_name, keys=params, slots=slots, salt=salt.hex(),
                         public_key=pk.hex(), threshold=threshold, synthetic=synthetic, n_keys=n,
                         created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    data = _encode(header, bytes(out))
    return Table(header, bytes(out), hashlib.sha256(data).hexdigest())


def _cuckoo(keys: list[bytes], salt: bytes, slots: int, max_kicks: int = 2000) -> list[bytes | None] | None:
    """Slot -> key of a 3-choice cuckoo layout, or None when an insertion fails."""
    import random

    rng = random.Random(salt)
    table: list[bytes | None] = [None] * slots
    for key in keys:
        cur = key
        for _ in range(max_kicks):
            pos = positions(salt, cur, slots)
            free = next((p for p in pos if table[p] is None), None)
            if free is not None:
                table[free] = cur
                cur = None
                break
            p = pos[rng.randrange(N_HASHES)]
            table[p], cur = cur, table[p]
        if cur is not None:
            return None
    return table


def bank_keys(bank, params: KeyParams) -> dict[bytes, list[tuple[str, float]]]:
    """Key -> [(reference, time)] over every reference frame of ``bank``."""
    out: dict[bytes, list[tuple[str, float]]] = {}
    for info in bank.list():
        if info.n_frames == 0:
            continue
        emb = bank.reference_embedding(info.reference)
        for t, keys in zip(emb.timestamps.tolist(), reference_keys(emb.features, params)):
            for k in keys:
                out.setdefault(k, []).append((info.reference, float(t)))
    return out
