#!/usr/bin/env python3
"""Match latency against bank size, 10^4 to 10^7 frame embeddings (issue 7), with the FAISS index
``vmatch.ann.choose_index`` picks for each size and its recall against exact search.

    python benchmarks/search_scaling.py [--sizes 10000,100000,1000000,10000000] [--results benchmarks/RESULTS.md]

Vectors: synthetic 256-d unit rows shaped like video (one random direction per 60-frame "video",
frames drifting around it; generated chunk by chunk from per-chunk seeds, so 10^7 rows = 10 GB are
never held at once). Queries: 1,000 stored frames plus noise (cosine ~0.8 to their original, an
edited copy), searched with k = 10 for recall; latency is the median of ten 60-frame queries
(one minute of video at 1 frame/s) with k = 32, as a match does.

Per size:

* exact search (``IndexFlatIP``, the BLAS path the bank uses) over the whole set, scanned in chunks
  of at most 10^6 rows (what a flat index does, without a second 10 GB copy): latency = the sum of
  the chunk scans; its top-10 is the ground truth;
* the index ``choose_index(n)`` picks (Flat below 2*10^5, IVF-Flat below 2*10^6, IVF-PQ32 above;
  nlist ~ 4 sqrt(n), an exact coarse quantiser): build time (train + add), bytes per
  vector, latency, recall@10 against exact search, copy@10 (the original frame among the 10).

Writes benchmarks/work/search_scaling.json and, with ``--results``, the section of RESULTS.md between
``<!-- search:begin -->`` and ``<!-- search:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from machine import machine, replace_section  # noqa: E402

D, K, NQ, PER_VIDEO, CHUNK = 256, 10, 1000, 60, 1_000_000
BEGIN, END = "<!-- search:begin -->", "<!-- search:end -->"


def chunk(n: int, i: int) -> np.ndarray:
    """Rows ``[i*CHUNK, min(n, (i+1)*CHUNK))`` of the synthetic set of size ``n`` (seeded per chunk)."""
    a, b = i * CHUNK, min(n, (i + 1) * CHUNK)
    rng = np.random.default_rng([n, i])
    m = b - a
    base = rng.standard_normal((-(-m // PER_VIDEO), D), dtype=np.float32)
    x = np.repeat(base, PER_VIDEO, axis=0)[:m]
    x += 0.8 * rng.standard_normal((m, D), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def n_chunks(n: int) -> int:
    return -(-n // CHUNK)


def queries(n: int) -> tuple[np.ndarray, np.ndarray]:
    """NQ noisy copies of random stored frames, and the ids of those frames."""
    rng = np.random.default_rng(12345)
    src = np.sort(rng.choice(n, NQ, replace=False))
    orig = np.concatenate([chunk(n, i)[src[(src >= i * CHUNK) & (src < (i + 1) * CHUNK)] - i * CHUNK]
                           for i in range(n_chunks(n))])
    q = orig + 0.045 * rng.standard_normal(orig.shape, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32), src


def exact(n: int, q: np.ndarray, q60: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Ground-truth top-K ids of ``q`` and the latency (s) of an exact scan for each 60-frame query."""
    import faiss

    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    lat = np.zeros(len(q60))
    for i in range(n_chunks(n)):
        x = chunk(n, i)
        index = faiss.IndexFlatIP(D)
        index.add(x)
        s, ids = index.search(q, K)
        ids = ids + i * CHUNK
        allv = np.concatenate([best_s, s], axis=1)
        alli = np.concatenate([best_i, ids], axis=1)
        order = np.argsort(-allv, axis=1)[:, :K]
        best_s = np.take_along_axis(allv, order, axis=1)
        best_i = np.take_along_axis(alli, order, axis=1)
        for j, qq in enumerate(q60):
            t = time.perf_counter()
            index.search(qq, 32)
            lat[j] += time.perf_counter() - t
        del index, x
    return best_i, float(np.median(lat))


def chosen(n: int, q: np.ndarray, q60: list[np.ndarray], train_size: int) -> tuple[dict, np.ndarray]:
    import faiss

    from vmatch.ann import choose_index, index_bytes, new_index, set_nprobe, train_index

    choice = choose_index(n, D)
    t0 = time.perf_counter()
    index = new_index(D, choice)
    if choice.kind != "flat":
        rng = np.random.default_rng(7)
        per = max(1, train_size // n_chunks(n))
        sample = np.concatenate([c[np.sort(rng.choice(len(c), min(len(c), per), replace=False))]
                                 for c in (chunk(n, i) for i in range(n_chunks(n)))])
        train_index(index, sample, choice)
        del sample
    t_train = time.perf_counter() - t0
    for i in range(n_chunks(n)):
        index.add_with_ids(chunk(n, i), np.arange(i * CHUNK, min(n, (i + 1) * CHUNK), dtype=np.int64))
    t_build = time.perf_counter() - t0
    set_nprobe(index, choice.nprobe)
    _, ids = index.search(q, K)
    lat = []
    for qq in q60:
        t = time.perf_counter()
        index.search(qq, 32)
        lat.append(time.perf_counter() - t)
    size = index_bytes(index) if choice.kind != "flat" or n <= 2_000_000 else n * (4 * D + 8)
    row = {"kind": choice.kind, "factory": choice.factory, "nlist": choice.nlist, "nprobe": choice.nprobe,
           "train_s": t_train, "build_s": t_build, "bytes_per_vector": size / n,
           "latency_ms": 1000 * float(np.median(lat)), "omp_threads": faiss.omp_get_max_threads()}
    return row, ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000,10000000")
    ap.add_argument("--train-size", type=int, default=300_000, help="training rows for IVF indexes")
    ap.add_argument("--out", default=str(HERE / "work" / "search_scaling.json"))
    ap.add_argument("--results", default=None)
    args = ap.parse_args(argv)
    from vmatch.ann import recall_at_k
    from vmatch.bank import _use_blas_for_small_batches

    _use_blas_for_small_batches()  # as the bank's own searches do
    mach = machine()
    print("machine:", mach, flush=True)
    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",") if s.strip()]:
        t0 = time.perf_counter()
        q, src = queries(n)
        rng = np.random.default_rng(3)
        q60 = [q[np.sort(rng.choice(NQ, 60, replace=False))] for _ in range(10)]
        gt, flat_lat = exact(n, q, q60)
        row, ids = chosen(n, q, q60, args.train_size)
        row.update(n=n, exact_latency_ms=1000 * flat_lat, recall_at_10=recall_at_k(ids, gt, K),
                   copy_at_10=float(np.mean([src[i] in ids[i] for i in range(NQ)])),
                   exact_copy_at_10=float(np.mean([src[i] in gt[i] for i in range(NQ)])),
                   wall_s=time.perf_counter() - t0)
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": mach, "rows": rows}, indent=1))
    md = markdown(rows, mach)
    if args.results:
        replace_section(Path(args.results), BEGIN, END, md)
    print(md)
    return 0


def markdown(rows: list[dict], mach: str) -> str:
    L = [f"Machine: {mach}. Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
         "Latency of one 60-frame query (a minute of video at 1 frame/s, k = 32), median of ten; synthetic 256-d "
         "frames; recall@10 of the chosen index against exact search over 1,000 edited-copy queries:", "",
         "| frames in bank | exact (flat) ms | chosen index | nprobe | ms | recall@10 | copy@10 (exact) | "
         "bytes / frame | build s |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['n']:,} | {r['exact_latency_ms']:.1f} | {r['factory']} | {r['nprobe'] or '-'} | "
                 f"{r['latency_ms']:.1f} | {r['recall_at_10']:.3f} | {r['copy_at_10']:.3f} ({r['exact_copy_at_10']:.3f}) | "
                 f"{r['bytes_per_vector']:.0f} | {r['build_s']:.1f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
