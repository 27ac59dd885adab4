"""Match keys: locality-sensitive keys of the frame descriptor (SimHash tables with multi-probe).

Where it sits: embed -> **keys** -> table (server) / vouchers (device).

A frame's descriptor (the bank's L2-normalised CNN vector) gives ``tables`` keys, one per table:
the signs of ``bits`` random projections (hyperplanes drawn from a public seed), with the table
number. Two frames share a key of a table with probability ``(1 - angle/pi) ** bits``, so an
edited copy (a high cosine) collides on some of the tables while unrelated frames almost never
do. Multi-probe: the device also sends, per table, the codes with one of its ``probes`` least
certain bits (smallest ``|projection|``) flipped, which recovers copies whose projection sits
near a hyperplane at the price of more vouchers. Keys are only a candidate filter: what a match
is, is decided by the usual scoring of the frames they open (:mod:`vmatch.private.server`).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

import numpy as np

from vmatch.errors import UsageError

KEY_BYTES = 10  # table u16 + code u64


@dataclass(frozen=True)
class KeyParams:
    """The public key scheme of a table (published in its header).

    Attributes:
        seed: seed of the random hyperplanes.
        tables: keys per frame (one per table).
        bits: sign bits per key (<= 64).
        probes: device multi-probe: extra keys per table, each with one more of the least
            certain bits flipped (0: exact codes only).
        dim: descriptor dimension.
    """

    seed: int = 20261203
    tables: int = 8
    bits: int = 20
    probes: int = 1
    dim: int = 256

    def __post_init__(self) -> None:
        for name, lo, hi in (("tables", 1, 256), ("bits", 1, 64), ("probes", 0, 16), ("dim", 1, 4096)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise UsageError(f"KeyParams.{name} must be an integer within {lo}..{hi}, got {v!r}")
        if self.probes > self.bits:
            raise UsageError(f"KeyParams.probes ({self.probes}) cannot exceed bits ({self.bits})")

    @property
    def keys_per_frame(self) -> int:
        """Keys (vouchers) a device sends per sampled frame."""
        return self.tables * (1 + self.probes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "KeyParams":
        try:
            return cls(**{k: d[k] for k in ("seed", "tables", "bits", "probes", "dim")})
        except (KeyError, TypeError) as e:
            raise UsageError(f"malformed key parameters {d!r:.200}: {e}") from None

    def hyperplanes(self) -> np.ndarray:
        """float32 [tables, bits, dim], from the public seed (the same on every machine)."""
        rng = np.random.default_rng([self.seed, self.tables, self.bits, self.dim])
        return rng.standard_normal((self.tables, self.bits, self.dim)).astype(np.float32)


def _pack(table: int, code: int) -> bytes:
    return struct.pack("<HQ", table, code)


def _codes(features: np.ndarray, params: KeyParams) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint64 [N, tables], projections float32 [N, tables, bits])."""
    x = np.asarray(features, np.float32)
    if x.ndim != 2 or x.shape[1] != params.dim:
        raise UsageError(f"descriptors must be [N, {params.dim}], got shape {x.shape}")
    proj = np.einsum("nd,tbd->ntb", x, params.hyperplanes())
    weights = (np.uint64(1) << np.arange(params.bits, dtype=np.uint64))
    codes = ((proj > 0).astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)
    return codes, proj


def reference_keys(features: np.ndarray, params: KeyParams) -> list[list[bytes]]:
    """Per frame, its ``tables`` exact keys (what the server puts in the table)."""
    codes, _ = _codes(features, params)
    return [[_pack(t, int(c)) for t, c in enumerate(row)] for row in codes]


def query_keys(features: np.ndarray, params: KeyParams) -> list[list[bytes]]:
    """Per frame, its ``keys_per_frame`` keys: per table the exact code, then the codes with
    the 1st, 2nd ... ``probes``-th least certain bit flipped (distinct, fixed count)."""
    codes, proj = _codes(features, params)
    order = np.argsort(np.abs(proj), axis=2)[:, :, : params.probes]
    out = []
    for i in range(codes.shape[0]):
        keys = []
        for t in range(params.tables):
            c = int(codes[i, t])
            keys.append(_pack(t, c))
            for b in order[i, t]:
                keys.append(_pack(t, c ^ (1 << int(b))))
        out.append(keys)
    return out
