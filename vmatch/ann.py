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
The coarse quantiser is always exact (a flat scan of the centroids, one BLAS product). An HNSW
graph over the centroids (``IVF{nlist}_HNSW32``, which FAISS suggests for 10^7+ vectors) was
measured on this 2-core CPU at 16,384 centroids of 256-d video-like vectors and lost on every
count: assigning 100,000 vectors took 5.3 s flat against 2.6 s / 13.4 s / 27.4 s for HNSW at
efSearch 16 / 128 / 256, which put only 42 % / 92 % / 98 % of them in their nearest list; probing
1,024 lists for a 60-frame query took 17 ms flat against 66 ms at efSearch 1,024 (and FAISS's
default efSearch 16 returned 15 % of the right lists: recall@10 0.18 at 10^7 frames). From 8,192
lists k-means runs 10 iterations instead of 25 (training time).
Recall of each type against exact search is measured by :func:`recall_at_k` (see
``benchmarks/ray_scaling.py`` and ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError

INDEX_TYPES = ("auto", "flat", "ivf", "ivfpq", "opqivfpq")
#: Lists from which k-means trains the centroids with fewer iterations (10 instead of 25).
FEW_KMEANS_ITERATIONS_FROM = 8192


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
    if choice.nlist >= FEW_KMEANS_ITERATIONS_FROM:
        ivf.cp.niter = 10
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


# ---------------------------------------------------------------------- GPU search (faiss-gpu)
def gpu_count() -> int:
    """CUDA GPUs FAISS can use: 0 with ``faiss-cpu`` (the default install) or without a GPU."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


def _gpu_flat(dim: int, device: int):
    """An empty exact inner-product index on GPU ``device`` (float32 storage) and its resources."""
    import faiss

    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = int(device)
    index = faiss.GpuIndexFlatIP(res, int(dim), cfg)
    index.vmatch_resources = res  # keep the resources alive as long as the index
    return index


class GpuFlatSearcher:
    """Exact search of a bank's flat index (``IndexIDMap2(IndexFlatIP)``) on a GPU.

    A read-only copy made once per bank snapshot (the ``faiss-gpu`` extra; the CPU index stays the
    bank's truth and its file format). ``search`` returns what the CPU index returns: inner
    products and the bank's frame ids (-1 where fewer than ``k`` exist).
    """

    def __init__(self, cpu_index, device: int = 0) -> None:
        import faiss

        flat = faiss.downcast_index(cpu_index.index)
        if not isinstance(flat, faiss.IndexFlatIP):
            raise UsageError(f"GPU search needs the bank's flat index, not {type(flat).__name__}")
        self.ids = faiss.vector_to_array(cpu_index.id_map).astype(np.int64)
        self.d = int(cpu_index.d)
        self.ntotal = int(cpu_index.ntotal)
        self.index = _gpu_flat(self.d, device)
        if self.ntotal:
            self.index.add(flat.reconstruct_n(0, self.ntotal))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sim, rows = self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        return sim, np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)


def check_search_device(device: str) -> int | None:
    """``"cpu"`` -> None; ``"cuda"`` / ``"cuda:N"`` -> N after checking that FAISS sees that GPU.

    Raises:
        UsageError: another value, or ``faiss-gpu`` / the GPU is missing (the message says what to install).
    """
    if device == "cpu":
        return None
    if not isinstance(device, str) or not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"search device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    n = gpu_count()
    dev = int(device[5:]) if ":" in device else 0
    if n == 0:
        raise UsageError(
            f"search device {device!r}: this FAISS has no GPU support or sees no GPU; install the `gpu` extra "
            "(pip uninstall faiss-cpu && pip install 'vmatch[gpu]') on a machine with CUDA, or search on 'cpu'"
        )
    if dev >= n:
        raise UsageError(f"search device {device!r}: FAISS sees only {n} GPU(s)")
    return dev
