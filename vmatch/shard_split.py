"""Splitting one bank into a sharded bank (``vmatch shard split``).

Where it sits: beside :mod:`vmatch.shards`; it copies what a bank stores, shard by shard.
"""

from __future__ import annotations

import os

from vmatch.bank import Bank
from vmatch.errors import BankError
from vmatch.shards import ShardedBank
from vmatch.signals.registry import PDQSignal, SIGNAL_TYPES


def split_bank(source: Bank, dest: str | os.PathLike, n_shards: int) -> ShardedBank:
    """Copy every reference of ``source`` (frames, timestamps, hashes, vPDQ, metadata) into a new
    sharded bank of ``n_shards`` at ``dest``; the source is left as it is. Returns it, open."""
    out = ShardedBank.open(dest, create=True, n_shards=n_shards, model=source.spec)
    try:
        if out.list():
            raise BankError(f"{dest}: the sharded bank is not empty; split into a new directory")
        hashes: dict[str, dict[str, str]] = {}
        for rid, t, v in source.hashes():
            if SIGNAL_TYPES[t].exact:
                hashes.setdefault(rid, {})[t] = v
        pdq = [(rid, t, v) for rid, t, v in source.hashes() if t == PDQSignal.name]
        for info in source.list():
            vp = source.vpdq_of(info.reference)
            if info.n_frames == 0:  # hash-only reference
                h = hashes.get(info.reference, {})
                if h:
                    out.add_hashes([(info.reference, t, v) for t, v in h.items()])
                if vp:
                    out.add_vpdq(info.reference, vp)
                continue
            emb = source.reference_embedding(info.reference)
            out.add_embedding(emb, source_name=info.source_name, extra=info.extra,
                              hashes=hashes.get(info.reference), vpdq=vp or None)
        if pdq:
            out.add_hashes(pdq)
    except BaseException:
        out.close()
        raise
    return out
