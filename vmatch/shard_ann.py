"""How a sharded bank searches each shard: its exact index (:class:`_FlatView`) or its compressed
index (:class:`_AnnView`), and building those compressed indexes (``vmatch shard ann``) with
their measured recall.

Layout, beside a shard's bank files::

    DIR/shard-000/ann.faiss + ann.json   the compressed index (vmatch.ann) and its record: kind,
                                         factory, nprobe, generation, frames fingerprint, SHA-256

A shard with a compressed index is searched with it and keeps its exact vectors in SQLite (read
for the candidates only), so its memory is the compressed codes. The index stays valid while the
shard's set of frames does not change (a hash import bumps the generation, not the frames); a
stale, damaged or unreadable one is never searched: the shard is searched exactly instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from vmatch.bank import Bank, FrameHits
from vmatch.bank.files import _sha256_file
from vmatch.bank.frame_index import search_index

log = logging.getLogger("vmatch.shards")

ANN_INDEX = "ann.faiss"
ANN_META = "ann.json"


def frames_fingerprint(first_fids: np.ndarray, n_frames: np.ndarray) -> str:
    """Identity of a shard's set of frames (which frame ids it holds): a compressed index built
    for it stays valid while this does not change."""
    h = hashlib.sha1(np.ascontiguousarray(first_fids, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(n_frames, dtype="<i8").tobytes())
    return h.hexdigest()


class _FlatView:
    """A shard searched with its bank's own exact index."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.snap = bank.snapshot()
        self.ref_ids = self.snap.ref_ids
        self.timestamps = self.snap.timestamps
        self.generation = self.snap.generation
        self.kind = "flat"
        self.ntotal = int(self.snap.index.ntotal)

    def search(self, q: np.ndarray, k: int) -> FrameHits:
        return self.bank.search(q, k, snapshot=self.snap)

    def vectors(self, pos: int) -> np.ndarray:
        return self.bank.reference_vectors(pos, snapshot=self.snap)

    def local(self, pos: int):
        return self.bank.local_features(pos, snapshot=self.snap)


class _AnnView:
    """A shard searched with its compressed index; exact vectors read from its SQLite file."""

    def __init__(self, bank: Bank, index, kind: str, *, table=None) -> None:
        self.bank = bank
        table = table if table is not None else bank.frame_table()
        self.generation, self.ref_ids, self.first_fids, self.n_frames, self.timestamps = table
        self.index = index
        self.kind = kind
        self.ntotal = int(index.ntotal)

    def search(self, q: np.ndarray, k: int) -> FrameHits:
        return search_index(self.index, self.first_fids, q, k)

    def vectors(self, pos: int) -> np.ndarray:
        return self.bank.reference_embedding(self.ref_ids[pos]).features

    def local(self, pos: int):
        return self.bank.reference_local(self.ref_ids[pos], n_frames=int(self.n_frames[pos]))


def load_ann_view(bank: Bank, d: Path, i: int, gen: int) -> _AnnView | None:
    """The search view of shard ``i`` (bank ``bank`` in directory ``d``) over its compressed
    index, when it exists and reflects generation ``gen``'s frames; else None (logged)."""
    meta_path = d / ANN_META
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); searching shard %d exactly", meta_path, e, i)
        return None
    table = None
    if int(meta.get("generation", -1)) != gen:
        # A change of hashes only (import) bumps the generation but leaves the frames alone.
        table = bank.frame_table()
        if meta.get("frames_fingerprint") != frames_fingerprint(table[2], table[3]):
            log.warning("%s: compressed index is older than the shard's frames (generation %s < %s); "
                        "searching it exactly until `vmatch shard ann` rebuilds it", d, meta.get("generation"), gen)
            return None
    import faiss

    from vmatch.ann import set_nprobe

    try:
        # A compressed index built by an older vmatch has no checksum: it is used as before.
        if "sha256" in meta and _sha256_file(d / ANN_INDEX) != meta["sha256"]:
            raise ValueError(f"it does not match {ANN_META}")
        index = faiss.read_index(str(d / ANN_INDEX))
    except Exception as e:  # noqa: BLE001 - a damaged cache: exact search instead
        log.warning("%s: cannot read (%s); searching shard %d exactly until `vmatch shard ann` rebuilds it",
                    d / ANN_INDEX, e, i)
        return None
    set_nprobe(index, int(meta.get("nprobe", 0)))
    return _AnnView(bank, index, meta.get("kind", "ann"), table=table)


def build_ann_index(bank: Bank, d: Path, i: int, kind: str, *, rng: np.random.Generator, nprobe: int | None,
                    recall_queries: int, k: int, pq_m: int) -> dict:
    """Build the compressed index of shard ``i`` (bank ``bank`` in directory ``d``; see
    :meth:`vmatch.shards.ShardedBank.build_ann`), measure its recall@``k`` against exact search,
    and write ``ann.faiss`` + ``ann.json`` atomically; a shard without frames has its files
    removed. Returns the shard's record. ``rng`` draws the training sample and the queries."""
    import faiss

    from vmatch.ann import choose_index, index_bytes, new_index, set_nprobe, train_index

    dim = bank.spec.dim
    gen, ref_ids, first, nfr, _ = bank.frame_table()
    n = int(nfr.sum())
    if n == 0:
        for f in (ANN_INDEX, ANN_META):
            with contextlib.suppress(OSError):
                (d / f).unlink()
        return {"shard": i, "frames": 0, "kind": "flat"}
    choice = choose_index(n, dim, kind, pq_m=pq_m)
    note = None
    if choice.kind != "flat" and n < 4 * choice.nlist:
        note = f"{n} frames are too few to train {choice.factory}; flat index instead"
        log.warning("shard %d: %s", i, note)
        choice = choose_index(n, dim, "flat")
    if nprobe is not None and choice.kind != "flat":
        choice = type(choice)(choice.kind, choice.factory, int(nprobe), choice.nlist)
    feats = lambda r: bank.reference_embedding(r).features  # noqa: E731
    # training sample: at most 200k frames, drawn uniformly over the shard
    keep = np.sort(rng.choice(n, min(n, 200_000), replace=False))
    sample, qs, pos = [], [], 0
    qsel = set(np.sort(rng.choice(n, min(n, recall_queries), replace=False)).tolist())
    index = new_index(dim, choice)
    for r, cnt in zip(ref_ids, nfr):
        f = feats(r)
        sel = keep[(keep >= pos) & (keep < pos + cnt)] - pos
        sample.append(f[sel])
        qs.extend(f[j - pos] for j in range(pos, pos + int(cnt)) if j in qsel)
        pos += int(cnt)
    train_index(index, np.concatenate(sample), choice)
    del sample
    Q = np.ascontiguousarray(np.stack(qs), dtype=np.float32)
    exact_s = np.full((len(Q), k), -np.inf, np.float32)
    exact_i = np.full((len(Q), k), -1, np.int64)
    buf_f: list[np.ndarray] = []
    buf_i: list[np.ndarray] = []

    def flush() -> None:  # add a block of frames; keep the exact top k of the queries
        nonlocal exact_s, exact_i
        if not buf_f:
            return
        f, ids = np.ascontiguousarray(np.concatenate(buf_f)), np.concatenate(buf_i)
        buf_f.clear()
        buf_i.clear()
        index.add_with_ids(f, ids)
        s = Q @ f.T
        part = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cs = np.concatenate([exact_s, np.take_along_axis(s, part, 1)], 1)
        ci = np.concatenate([exact_i, ids[part]], 1)
        o = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        exact_s, exact_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)

    held = 0
    for r, a, cnt in zip(ref_ids, first, nfr):
        buf_f.append(feats(r))
        buf_i.append(np.arange(a, a + cnt, dtype=np.int64))
        held += int(cnt)
        if held >= 65536:
            flush()
            held = 0
    flush()
    set_nprobe(index, choice.nprobe)
    _, approx = index.search(Q, k)
    from vmatch.ann import recall_at_k

    rec = recall_at_k(approx, exact_i, k)
    meta = {"kind": choice.kind, "factory": choice.factory, "nprobe": choice.nprobe, "generation": gen,
            "frames_fingerprint": frames_fingerprint(first, nfr),
            "frames": n, "bytes": index_bytes(index), f"recall_at_{k}": round(rec, 4),
            "recall_queries": len(Q)}
    if note:
        meta["note"] = note
    tmp = d / f".{ANN_INDEX}.tmp"
    faiss.write_index(index, str(tmp))
    meta["sha256"] = _sha256_file(tmp)  # checked on load: a damaged file is never searched
    os.replace(tmp, d / ANN_INDEX)
    (d / f".{ANN_META}.tmp").write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(d / f".{ANN_META}.tmp", d / ANN_META)
    return {"shard": i, **meta}
