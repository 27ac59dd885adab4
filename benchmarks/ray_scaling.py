#!/usr/bin/env python3
"""Scale-out figures (issue 8): Ray indexing throughput, index memory per hour of video, FAISS
compressed-index recall/latency at 1e5..1e6 vectors, and the plan for 10^6 hours of references.

    python benchmarks/ray_scaling.py --part scaling   # eval clips of ../shared/clips, real model
    python benchmarks/ray_scaling.py --part index --sizes 100000,1000000
    python benchmarks/ray_scaling.py --part plan      # reads the two JSON files above

* scaling: the ``eval`` clips of ``benchmarks/clip_split.tsv`` (only those; read from
  ``--clips``, default ../shared/clips), EfficientNet-Lite0 at 1 frame/s, CPU. Runs: local
  (``index_videos``, no Ray, torch on all cores), then a Ray cluster of a driver-only head
  (0 CPUs) plus W = 1, 2 worker nodes (``ray.cluster_utils.Cluster``; each node 2 logical CPUs,
  one embedding actor of 1 torch thread + decode tasks). Also decode-only and embed-only rates.
  Throughput = seconds of video / wall seconds of ``engine.index`` (cluster start and actor model
  load reported apart). Fresh bank each run.
* index: synthetic 256-d unit vectors shaped like video (one random direction per 60-frame
  "video", frames drifting around it), 1,000 queries = stored frames plus noise (cosine ~0.8,
  an edited copy). Per index type (Flat, IVF-Flat, IVF-PQ32, OPQ32+IVF-PQ32, nlist/nprobe from
  ``vmatch.ann.choose_index``): build (train + add) time, serialised bytes per vector, search
  latency of a 60-frame query (k = 32), recall@10 against exact search, and "copy@10" (the
  original frame among the 10 returned).
* plan: arithmetic on the measured figures for 10^6 hours; every assumption is named.

Writes benchmarks/work/ray_scaling_<part>.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from machine import machine  # noqa: E402

WORK = HERE / "work"


def eval_clips(clips: Path) -> list[Path]:
    with open(HERE / "clip_split.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [clips / r["filename"] for r in rows if r["split"] == "eval" and (clips / r["filename"]).exists()]


# ---------------------------------------------------------------------- scaling
def part_scaling(args) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from vmatch.bank import Bank
    from vmatch.distributed import RayEngine, RayOptions
    from vmatch.embed import make_embedder, tune_cpu_allocator
    from vmatch.pipeline import index_videos
    from vmatch.sample import embed_sampled, sample_video

    tune_cpu_allocator()
    files = eval_clips(Path(args.clips))
    if args.max_clips:
        files = files[: args.max_clips]
    out: dict = {"machine": machine(), "clips": len(files), "runs": []}
    work = Path(tempfile.mkdtemp(prefix="vmrb", dir="/tmp"))
    emb = make_embedder(None, device="cpu")
    # decode-only and embed-only rates (one process, all cores)
    t0 = time.perf_counter()
    sampled = [sample_video(f, size=tuple(emb.spec.input_size)) for f in files]
    t_dec = time.perf_counter() - t0
    secs = sum(s.duration for s in sampled)
    frames = sum(len(s.timestamps) for s in sampled)
    t0 = time.perf_counter()
    for s in sampled:
        embed_sampled(s, emb, video_id="x")
    t_emb = time.perf_counter() - t0
    del sampled
    out.update(video_seconds=secs, frames=frames, decode_s=t_dec, embed_s=t_emb,
               decode_frames_per_s=frames / t_dec, embed_frames_per_s=frames / t_emb)
    print(f"{len(files)} clips, {secs:.0f} s of video, {frames} frames; decode {t_dec:.1f} s, embed {t_emb:.1f} s",
          flush=True)
    # local runs: torch on all cores (the CLI default), and on 1 thread (what one Ray actor gets)
    for threads in (None, 1):
        name = f"local{threads or ''}"
        e = emb if threads is None else make_embedder(None, device="cpu", threads=1)
        with Bank.open(work / name, create=True) as bank:
            bank.set_embedder(e)
            t0 = time.perf_counter()
            s = index_videos(bank, files)
            wall = time.perf_counter() - t0
        db_bytes = (work / name / "bank.sqlite").stat().st_size
        out["sqlite_bytes_per_frame"] = db_bytes / max(1, s.frames)
        label = "local (no Ray), torch " + ("default threads" if threads is None else "1 thread")
        out["runs"].append({"run": label, "workers": 0, "wall_s": wall, "videos": s.videos,
                            "video_s": s.seconds, "x_realtime": s.seconds / wall})
        print(f"{label}: {s.videos} videos {s.seconds:.0f} s in {wall:.1f} s = {s.seconds / wall:.1f}x", flush=True)
    if threads == 1:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    os.environ["RAY_TMPDIR"] = str(work)
    for w in (1, 2):
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(w):
            cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        t_cluster = time.perf_counter() - t0
        try:
            with Bank.open(work / f"ray{w}", create=True) as bank:
                t0 = time.perf_counter()
                engine = RayEngine(bank.spec, RayOptions(address=cluster.address, num_actors=w, device="cpu"))
                engine.actor_pids()  # actors constructed (model loaded)
                t_actors = time.perf_counter() - t0
                t0 = time.perf_counter()
                s = engine.index(bank, files)
                wall = time.perf_counter() - t0
                engine.close()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
        out["runs"].append({"run": f"Ray, {w} worker node(s)", "workers": w, "wall_s": wall, "videos": s.videos,
                            "video_s": s.seconds, "x_realtime": s.seconds / wall, "cluster_start_s": t_cluster,
                            "actor_start_s": t_actors, "failed": len(s.failed)})
        print(f"ray {w}: {s.videos} videos {s.seconds:.0f} s in {wall:.1f} s = {s.seconds / wall:.1f}x "
              f"(cluster {t_cluster:.1f} s, actors {t_actors:.1f} s)", flush=True)
    out["load_after"] = os.getloadavg()[0]
    return out


# ---------------------------------------------------------------------- index
def synthetic(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    per = 60
    for a in range(0, n, 65536):
        m = min(65536, n - a)
        base = rng.standard_normal((math.ceil(m / per), d)).astype(np.float32)
        x = np.repeat(base, per, axis=0)[:m] + 0.8 * rng.standard_normal((m, d)).astype(np.float32)
        out[a : a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def part_index(args) -> dict:
    import faiss

    from vmatch.ann import choose_index, index_bytes, new_index, recall_at_k, set_nprobe, train_index

    from vmatch.bank import _use_blas_for_small_batches

    _use_blas_for_small_batches()  # as the bank's own searches do
    d, k, nq = 256, 10, 1000
    out: dict = {"machine": machine(), "faiss": faiss.__version__, "omp_threads": faiss.omp_get_max_threads(),
                 "dim": d, "rows": []}
    for n in [int(x) for x in args.sizes.split(",")]:
        x = synthetic(n, d, seed=n)
        rng = np.random.default_rng(1)
        src = rng.choice(n, nq, replace=False)
        q = x[src] + 0.045 * rng.standard_normal((nq, d)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        print(f"n={n}: mean cosine query/original {float((q * x[src]).sum(1).mean()):.3f}", flush=True)
        exact_ids = None
        for kind in args.types.split(","):
            choice = choose_index(n, d, kind)
            t0 = time.perf_counter()
            index = new_index(d, choice)
            if kind != "flat":
                sample = x[np.sort(rng.choice(n, min(n, args.train_size), replace=False))]
                train_index(index, sample, choice)
            t_train = time.perf_counter() - t0
            index.add_with_ids(x, np.arange(n, dtype=np.int64))
            t_build = time.perf_counter() - t0
            set_nprobe(index, choice.nprobe)
            _, ids = index.search(q, k)
            if kind == "flat":
                exact_ids = ids
            lat = []
            for a in range(0, 600, 60):  # ten 60-frame queries, k = 32
                t1 = time.perf_counter()
                index.search(q[a : a + 60], 32)
                lat.append(time.perf_counter() - t1)
            row = {
                "n": n, "kind": kind, "factory": choice.factory, "nprobe": choice.nprobe,
                "train_s": t_train, "build_s": t_build, "bytes": index_bytes(index),
                "bytes_per_vector": index_bytes(index) / n,
                "search_ms_60_frames": 1000 * float(np.median(lat)),
                "recall_at_10": recall_at_k(ids, exact_ids, k) if exact_ids is not None else None,
                "copy_at_10": float(np.mean([src[i] in ids[i] for i in range(nq)])),
            }
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
            del index
        del x
    return out


# ---------------------------------------------------------------------- match
def part_match(args) -> dict:
    """End-to-end match latency (search + normalisation + alignment, query already embedded) on a
    sharded bank of synthetic 1-minute references, with exact (flat) shards and then IVF-PQ
    shards built by ``ShardedBank.build_ann``; each query is 60 frames of a reference + noise."""
    from vmatch.embed import FakeEmbedder
    from vmatch.pipeline import MatchParams
    from vmatch.shards import ShardedBank
    from vmatch.types import VideoEmbedding

    n = int(args.sizes.split(",")[0])
    d, per = 256, 60
    fake = FakeEmbedder(dim=d)
    work = Path(tempfile.mkdtemp(prefix="vmrm", dir="/tmp"))
    x = synthetic(n, d, seed=7)
    out: dict = {"machine": machine(), "frames": n, "shards": args.shards, "rows": []}
    t0 = time.perf_counter()
    with ShardedBank.open(work / "sh", create=True, n_shards=args.shards, model=fake.spec) as sh:
        ts = np.arange(per, dtype=np.float64)
        for r in range(n // per):
            sh.add_embedding(VideoEmbedding(f"r{r:07d}", ts, x[r * per : (r + 1) * per], float(per), fake.spec.model_id))
    out["fill_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(3)
    picks = rng.choice(n // per, 10, replace=False)
    queries = []
    for r in picks:
        q = x[r * per : (r + 1) * per] + 0.045 * rng.standard_normal((per, d)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        queries.append((f"r{r:07d}", VideoEmbedding("q", ts, q, float(per), fake.spec.model_id)))
    del x
    params = MatchParams(threshold=0.15)
    for kind in ("flat", args.ann):
        with ShardedBank.open(work / "sh") as sh:
            sh.set_embedder(fake)
            if kind != "flat":
                t0 = time.perf_counter()
                recs = sh.build_ann(kind)
                out["ann_build_s"] = time.perf_counter() - t0
                out["ann"] = recs
            sh.match(queries[0][1], params=params)  # load the shards' indexes
            lat, hits = [], 0
            for truth, q in queries:
                t1 = time.perf_counter()
                rep = sh.match(q, params=params)
                lat.append(time.perf_counter() - t1)
                hits += bool(rep.matches) and rep.matches[0].reference == truth
            row = {"index": kind, "median_s": float(np.median(lat)), "max_s": float(np.max(lat)),
                   "top1_correct": f"{hits}/{len(queries)}"}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    return out


# ---------------------------------------------------------------------- plan
def part_plan(args) -> dict:
    sc = json.loads((WORK / "ray_scaling_scaling.json").read_text())
    ix = {"rows": [r for f in sorted(WORK.glob("ray_scaling_index*.json")) for r in json.loads(f.read_text())["rows"]]}
    hours = 1e6
    fps = 1.0
    frames = hours * 3600 * fps
    by = {(r["n"], r["kind"]): r for r in ix["rows"]}
    nmax = max(r["n"] for r in ix["rows"])
    pq = by.get((nmax, "opqivfpq")) or by.get((nmax, "ivfpq"))
    flat = by[(nmax, "flat")]
    # frames per second per CPU core, decode and embed, measured on this machine (2 cores)
    cores = os.cpu_count() or 2
    dec_core = sc["decode_frames_per_s"] / cores
    emb_core = sc["embed_frames_per_s"] / cores
    cpu_core_h_per_1000h = 1000 * 3600 * fps * (1 / dec_core + 1 / emb_core) / 3600
    plan = {
        "frames": frames,
        "flat_ram_bytes": frames * flat["bytes_per_vector"],
        "pq_ram_bytes": frames * pq["bytes_per_vector"],
        "pq_kind": pq["kind"], "pq_recall_at_10": pq["recall_at_10"], "pq_copy_at_10": pq["copy_at_10"],
        "sqlite_bytes": frames * sc["sqlite_bytes_per_frame"],
        "decode_frames_per_s_core": dec_core, "embed_frames_per_s_core": emb_core,
        "cpu_core_hours_per_1000h": cpu_core_h_per_1000h,
        "measured_index_n": nmax,
        "search_ms_60_frames_at_nmax": pq["search_ms_60_frames"],
    }
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["scaling", "index", "match", "plan"], required=True)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--ann", default="ivfpq")
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"))
    ap.add_argument("--max-clips", type=int, default=0)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--types", default="flat,ivf,ivfpq,opqivfpq")
    ap.add_argument("--train-size", type=int, default=100_000)
    ap.add_argument("--tag", default="", help="suffix of the output JSON (several index runs)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    res = {"scaling": part_scaling, "index": part_index, "match": part_match, "plan": part_plan}[args.part](args)
    res["command"] = "python benchmarks/ray_scaling.py " + " ".join(sys.argv[1:])
    (WORK / f"ray_scaling_{args.part}{args.tag}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
