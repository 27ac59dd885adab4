"""Compressed (approximate) FAISS indexes for large banks, chosen by size, with measured recall.

Where it sits: bank -> **frame search** -> align. A bank's own index is exact
(``IndexFlatIP``: 4 x D bytes a frame, 1 KB at D = 256), right for up to ~10^6 frames. Beyond,
a shard of a :class:`~vmatch.shards.ShardedBank` can carry one of these instead; the exact
features stay in the shard's SQLite file, which alignment reads for the few candidate references
only, so the search step alone is approximate and a missed frame only matters when it was the
one that made a reference a candidate.

=============================  ==================  ======================================
frames in the shard            index               bytes per frame (D = 256), + 8 for id
=============================  ==================  ======================================
< 200,000                      Flat                1024
< 2,000,000                    IVF{nlist},Flat     1024
< 20,000,000                   IVF{nlist},PQ32     32
>= 20,000,000                  OPQ32,IVF{nlist},PQ32   32 (+ a 256 x 256 rotation)
=============================  ==================  ======================================

``nlist`` ~ 4 sqrt(N) (a power of two, 256..65536); ``nprobe`` defaults to nlist / 16 (at least 16).
Recall of each type against exact search is measured by :func:`recall_at_k` (see
``benchmarks/ray_scaling.py`` and ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError

INDEX_TYPES = ("auto", "flat", "ivf", "ivfpq", "opqivfpq")


@dataclass(frozen=True)
class IndexChoice:
    """A FAISS index recipe: ``factory`` string (inner-product metric) and search ``nprobe``."""

    kind: str  # flat | ivf | ivfpq | opqivfpq
    factory: str
    nprobe: int
    nlist: int


def _nlist(n: int) -> int:
    return int(min(65536, max(256, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))))


def choose_index(n_vectors: int, dim: int, kind: str = "auto", *, pq_m: int = 32) -> IndexChoice:
    """The index recipe for ``n_vectors`` frames of dimension ``dim`` (see the module table).

    Args:
        n_vectors: frames the index will hold.
        dim: their dimension (a multiple of ``pq_m`` for the PQ types).
        kind: ``"auto"`` (by size) or one of ``flat``, ``ivf``, ``ivfpq``, ``opqivfpq``.
        pq_m: PQ sub-quantisers (bytes per code at 8 bits each).
    """
    if kind not in INDEX_TYPES:
        raise UsageError(f"unknown index type {kind!r}; use one of {', '.join(INDEX_TYPES)}")
    if kind == "auto":
        kind = ("flat" if n_vectors < 200_000 else "ivf" if n_vectors < 2_000_000
                else "ivfpq" if n_vectors < 20_000_000 else "opqivfpq")
    if kind in ("ivfpq", "opqivfpq") and dim % pq_m:
        raise UsageError(f"dimension {dim} is not a multiple of the {pq_m} PQ sub-quantisers")
    nlist = _nlist(n_vectors)
    nprobe = max(16, nlist // 16)
    factory = {
        "flat": "Flat",
        "ivf": f"IVF{nlist},Flat",
        "ivfpq": f"IVF{nlist},PQ{pq_m}",
        "opqivfpq": f"OPQ{pq_m},IVF{nlist},PQ{pq_m}",
    }[kind]
    return IndexChoice(kind, factory, nprobe if kind != "flat" else 0, nlist if kind != "flat" else 0)


def new_index(dim: int, choice: IndexChoice):
    """An empty FAISS index for ``choice`` (inner-product metric; flat ones wrapped in an id map)."""
    import faiss

    if choice.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "do_polysemous_training"):
        # index_factory turns on polysemous training (for Hamming filtering we never use): it
        # multiplies training time ~10x for nothing.
        ivf.do_polysemous_training = False
    return index


def train_index(index, sample: np.ndarray, choice: IndexChoice) -> None:
    """Train ``index`` on ``sample`` rows (no-op for flat) and set its ``nprobe``."""
    if choice.kind == "flat":
        return
    x = np.ascontiguousarray(sample, dtype=np.float32)
    if x.shape[0] < choice.nlist * 4:
        raise UsageError(
            f"{choice.factory}: {x.shape[0]} training vectors are too few for {choice.nlist} lists; "
            "use a flat index (--type flat) for so few frames"
        )
    index.train(x)
    set_nprobe(index, choice.nprobe)


def build_index(vectors: np.ndarray, ids: np.ndarray, choice: IndexChoice, *, train_size: int = 200_000,
                seed: int = 0):
    """Train (on a random sample of at most ``train_size`` rows) and fill a FAISS index.

    Returns an index whose ``search`` gives inner products (approximate for PQ) and the given
    ``ids`` (int64, e.g. the bank's frame ids).
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(ids):
        raise UsageError(f"build_index: {x.shape} vectors for {len(ids)} ids")
    index = new_index(x.shape[1], choice)
    if choice.kind != "flat":
        rng = np.random.default_rng(seed)
        sample = x if x.shape[0] <= train_size else x[np.sort(rng.choice(x.shape[0], train_size, replace=False))]
        train_index(index, sample, choice)
    index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def set_nprobe(index, nprobe: int) -> None:
    """Set ``nprobe`` of the IVF layer of ``index`` (no-op for flat indexes)."""
    import faiss

    if nprobe <= 0:
        return
    try:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
    except RuntimeError:  # not an IVF index
        pass


def index_bytes(index) -> int:
    """Bytes of the serialised index (≈ its memory when loaded)."""
    import faiss

    return int(faiss.serialize_index(index).size)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Fraction of the exact top-``k`` neighbours found in the approximate top-``k`` (mean over
    queries): the standard ``k``-recall@``k``."""
    a, e = np.asarray(approx_ids)[:, :k], np.asarray(exact_ids)[:, :k]
    hits = sum(len(np.intersect1d(a[i][a[i] >= 0], e[i][e[i] >= 0])) for i in range(len(e)))
    total = int((e >= 0).sum())
    return hits / total if total else 1.0
