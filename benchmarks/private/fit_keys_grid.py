"""Grid over the private mode's SimHash match keys on the benchmark's TRAINING part only.

What opens in the private mode is decided by key collisions alone: a query frame "collides" when
one of its device keys equals a key of some reference frame; a video opens at ``t`` distinct
colliding frames. This script sweeps (bits b, tables L, device multi-probe m, reference
multi-probe r) and counts, per query:

* positives: query frames inside the ground-truth query segment that collide with a frame of the
  true reference inside the ground-truth reference segment (+-TOL s): the "true" collisions;
* every query: frames that collide with any reference frame (what opens the video); for
  positives also the frames outside the copy that collide (spurious);

and reports, for t = 1..4, recall (positives plain matching finds, with >= t true colliding
frames; also over all positives) and negatives opened (>= t colliding frames), with the device
vouchers per frame (L * (1 + m)) and the distinct table keys per reference frame / hour.

Keys are the project's (vmatch.private.lsh): hyperplanes from KeyParams(seed, tables, bits,
dim).hyperplanes(); exact code per table plus, device side, the m codes with one of the m least
certain bits flipped (single flips, as lsh.query_keys). Reference multi-probe r=1 (not in the
project yet) also puts the code with the least certain bit flipped into the table.

Inputs come from pk_embed.py (cached .npz, plain cnn matches). Run:

    .venv/bin/python benchmarks/private/pk_embed.py          # bank at /tmp/pk/bank first (see its doc)
    .venv/bin/python benchmarks/private/fit_keys_grid.py --out benchmarks/private/fit_keys_grid.md
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))

TOL = 0.5  # s, around the ground-truth segments (1 frame/s sampling)
BITS = (12, 14, 16, 18, 20, 22, 24, 28, 32)
TABLES = (4, 8, 12, 16, 24, 32)
DPROBES = (0, 1, 2, 3)
RPROBES = (0, 1)
TS = (1, 2, 3, 4)
GS = (None, 0.95, 0.85)  # device drops frames whose background similarity is >= g (None: keeps all)


def load(bench: Path, cache: Path):
    refs = [line.split("\t")[0] for line in (bench / "references.txt").read_text().splitlines() if line.strip()]
    rf, rt, rid = [], [], []
    for i, r in enumerate(refs):
        z = np.load(cache / f"ref__{r}.npz", allow_pickle=False)
        rf.append(z["features"])
        rt.append(z["timestamps"])
        rid.append(np.full(len(z["timestamps"]), i))
    R = np.concatenate(rf).astype(np.float32)
    RT = np.concatenate(rt)
    RI = np.concatenate(rid)
    queries = list(csv.DictReader(open(bench / "queries.csv")))
    gt = {g["query_id"]: g for g in csv.DictReader(open(bench / "ground_truth.csv"))}
    Q = []
    missing = [q["query_id"] for q in queries if not (cache / f"{q['query_id']}.npz").exists()]
    if missing:
        print(f"WARNING: {len(missing)} queries not embedded yet, left out: {missing[:5]}...", file=sys.stderr)
    for q in queries:
        if q["query_id"] in missing:
            continue
        z = np.load(cache / f"{q['query_id']}.npz", allow_pickle=False)
        Q.append(dict(q=q, f=z["features"].astype(np.float32), t=z["timestamps"], plain=set(z["plain"].tolist()),
                      err=str(z["error"])))
    bgz = np.load(cache / "background.npz", allow_pickle=False)
    for d in Q:
        d["bg"] = (d["f"] @ bgz["background"].T).max(axis=1) if len(d["f"]) else np.zeros(0, np.float32)
    return refs, R, RT, RI, Q, gt


def true_masks(refs, RT, RI, Q, gt):
    """Per positive: (query-frame mask inside the copy, reference-frame mask inside the true segment)."""
    out = {}
    for d in Q:
        q = d["q"]
        if q["kind"] != "positive":
            continue
        g = gt[q["query_id"]]
        qm = (d["t"] >= float(g["query_start"]) - TOL) & (d["t"] <= float(g["query_end"]) + TOL)
        ri = refs.index(g["reference_id"])
        rm = (RI == ri) & (RT >= float(g["reference_start"]) - TOL) & (RT <= float(g["reference_end"]) + TOL)
        out[q["query_id"]] = (qm, rm)
    return out


def codes_probes(x: np.ndarray, H: np.ndarray, m: int):
    """codes uint64 [N, L, 1+m]: exact code, then single flips of the m least certain bits."""
    proj = np.einsum("nd,tbd->ntb", x, H)
    b = H.shape[1]
    w = np.uint64(1) << np.arange(b, dtype=np.uint64)
    code = ((proj > 0).astype(np.uint64) * w).sum(axis=2, dtype=np.uint64)
    order = np.argsort(np.abs(proj), axis=2)[:, :, :m]
    flips = np.uint64(1) << order.astype(np.uint64)
    return np.concatenate([code[:, :, None], code[:, :, None] ^ flips], axis=2)


def _eq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [Na, Nb]: some code of row a[i] equals some code of row b[j]."""
    m = np.zeros((a.shape[0], b.shape[0]), bool)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            m |= a[:, i, None] == b[None, :, j]
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="benchmarks/work/train0")
    ap.add_argument("--cache", default="/tmp/pk/emb")
    ap.add_argument("--out", default=str(HERE / "fit_keys_grid.md"))
    ap.add_argument("--csv", default="/tmp/pk/grid.csv")
    ap.add_argument("--seed", type=int, default=None, help="hyperplane seed (default: KeyParams' public seed)")
    ap.add_argument("--transform", default="none",
                    help="none | pcaK (top-K PCA directions of the reference frames) | whiteK (the same, "
                         "whitened); then L2-normalised. Fitted on the bank's reference frames (the server "
                         "would publish it)")
    ap.add_argument("--small", action="store_true", help="a smaller grid (b 14..24, L 8..24)")
    args = ap.parse_args(argv)
    global BITS, TABLES
    if args.small:
        BITS, TABLES = (14, 16, 18, 20, 24), (8, 16, 24)
    if "train" not in Path(args.bench).name:
        raise SystemExit("fit on the training part only")
    from machine import machine
    from vmatch.private.lsh import KeyParams

    t0 = time.monotonic()
    bench = Path(args.bench)
    refs, R, RT, RI, Q, gt = load(bench, Path(args.cache))
    tm = true_masks(refs, RT, RI, Q, gt)
    if args.transform != "none":
        kind = "white" if args.transform.startswith("white") else "pca"
        k = int(args.transform[len(kind):])
        mu = R.mean(axis=0)
        _, sv, vt = np.linalg.svd(R - mu, full_matrices=False)
        P = vt[:k].T / (sv[:k, None].T / np.sqrt(len(R)) + 1e-3) if kind == "white" else vt[:k].T

        def tr(x):
            y = (x - mu) @ P
            return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)

        R = tr(R)
        for d in Q:
            if len(d["f"]):
                d["f"] = tr(d["f"])
            else:
                d["f"] = np.zeros((0, k), np.float32)
    ref_hours = len(RT) / 3600.0  # reference frames are sampled at 1 frame/s
    pos = [d for d in Q if d["q"]["kind"] == "positive"]
    neg = [d for d in Q if d["q"]["kind"] != "positive"]
    found = [d for d in pos if d["q"]["reference_id"] in d["plain"]]
    plain_false = [d for d in neg if d["plain"]]
    allf = np.concatenate([d["f"] for d in Q])
    offs = np.cumsum([0] + [len(d["f"]) for d in Q])

    # cosine context (no hashing): best true-segment cosine per copy frame, best any-ref cosine per negative frame
    S = allf @ R.T
    cos_true, cos_neg = [], []
    for k, d in enumerate(Q):
        s = S[offs[k]:offs[k + 1]]
        if d["q"]["query_id"] in tm:
            qm, rm = tm[d["q"]["query_id"]]
            if qm.any() and rm.any():
                cos_true.append(s[qm][:, rm].max(axis=1))
        elif len(s):
            cos_neg.append(s.max(axis=1))
    cos_true = np.concatenate(cos_true) if cos_true else np.zeros(0)
    cos_neg = np.concatenate(cos_neg) if cos_neg else np.zeros(0)

    n_look = sum(bool(d["q"]["lookalike"]) for d in neg)
    # the ideal key: a frame collides when its cosine to a reference frame is >= tau (what LSH approximates)
    ideal = []
    for tau in (0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995):
        nt, na = {}, {}
        for k, d in enumerate(Q):
            s_ = S[offs[k]:offs[k + 1]]
            qid = d["q"]["query_id"]
            na[qid] = int((s_.max(axis=1) >= tau).sum()) if len(s_) else 0
            if qid in tm:
                qm, rm = tm[qid]
                nt[qid] = int(((s_[:, rm].max(axis=1) >= tau) & qm).sum()) if rm.any() and len(s_) else 0
        for t in TS:
            ideal.append((tau, t, sum(nt[d["q"]["query_id"]] >= t for d in found),
                          sum(nt[d["q"]["query_id"]] >= t for d in pos),
                          sum(na[d["q"]["query_id"]] >= t for d in neg),
                          sum(na[d["q"]["query_id"]] >= t for d in neg if d["q"]["lookalike"])))
    ideal_adj = []
    for delta in (0.0, 0.05, 0.1, 0.2, 0.3):
        nt, na = {}, {}
        for k, d in enumerate(Q):
            s_ = S[offs[k]:offs[k + 1]] - d["bg"][:, None]
            qid = d["q"]["query_id"]
            na[qid] = int((s_.max(axis=1) > delta).sum()) if len(s_) else 0
            if qid in tm:
                qm, rm = tm[qid]
                nt[qid] = int(((s_[:, rm].max(axis=1) > delta) & qm).sum()) if rm.any() and len(s_) else 0
        for t in TS:
            ideal_adj.append((delta, t, sum(nt[d["q"]["query_id"]] >= t for d in found),
                              sum(nt[d["q"]["query_id"]] >= t for d in pos),
                              sum(na[d["q"]["query_id"]] >= t for d in neg),
                              sum(na[d["q"]["query_id"]] >= t for d in neg if d["q"]["lookalike"])))
    allbg = np.concatenate([d["bg"] for d in Q])
    rows = []
    for b, L in itertools.product(BITS, TABLES):
        p = KeyParams(tables=L, bits=b, probes=0, dim=R.shape[1]) if args.seed is None else \
            KeyParams(seed=args.seed, tables=L, bits=b, probes=0, dim=R.shape[1])
        H = p.hyperplanes()
        qc_all = codes_probes(allf, H, max(DPROBES))
        rc_all = codes_probes(R, H, max(RPROBES))
        for r in RPROBES:
            rc = rc_all[:, :, : 1 + r]
            distinct = sum(len(np.unique(rc[:, t, :])) for t in range(L))
            for m in DPROBES:
                C = np.zeros((len(allf), len(R)), bool)
                for t in range(L):
                    C |= _eq(qc_all[:, t, : 1 + m], rc[:, t, :])
                any_hit = C.any(axis=1)
                for g in GS:
                    keep_all = np.ones(len(allf), bool) if g is None else allbg < g
                    hit_k = any_hit & keep_all
                    per = {}
                    for k, d in enumerate(Q):
                        sl = slice(offs[k], offs[k + 1])
                        qid = d["q"]["query_id"]
                        n_any = int(hit_k[sl].sum())
                        if qid in tm:
                            qm, rm = tm[qid]
                            n_true = int((C[sl][:, rm].any(axis=1) & qm & keep_all[sl]).sum())
                            n_spur = int((hit_k[sl] & ~qm).sum())
                        else:
                            n_true, n_spur = 0, n_any
                        per[qid] = (n_true, n_any, n_spur)
                    negf = sum(per[d["q"]["query_id"]][1] for d in neg) / max(1, sum(len(d["f"]) for d in neg))
                    posnc = [(per[d["q"]["query_id"]][2], int((~tm[d["q"]["query_id"]][0]).sum())) for d in pos]
                    spur_rate = sum(a for a, _ in posnc) / max(1, sum(n for _, n in posnc))
                    kept = float(keep_all.mean())
                    for t in TS:
                        rows.append(dict(
                            b=b, L=L, m=m, r=r, g=g if g is not None else "-", t=t, vouchers=L * (1 + m),
                            vouchers_kept=L * (1 + m) * kept, ref_keys=distinct / len(R),
                            keys_per_h=distinct / ref_hours,
                            rec_plain=sum(per[d["q"]["query_id"]][0] >= t for d in found) / max(1, len(found)),
                            n_plain=sum(per[d["q"]["query_id"]][0] >= t for d in found),
                            rec_all=sum(per[d["q"]["query_id"]][0] >= t for d in pos) / max(1, len(pos)),
                            n_all=sum(per[d["q"]["query_id"]][0] >= t for d in pos),
                            neg_open=sum(per[d["q"]["query_id"]][1] >= t for d in neg) / max(1, len(neg)),
                            n_neg=sum(per[d["q"]["query_id"]][1] >= t for d in neg),
                            n_neg_look=sum(per[d["q"]["query_id"]][1] >= t for d in neg if d["q"]["lookalike"]),
                            n_neg_other=sum(per[d["q"]["query_id"]][1] >= t for d in neg if not d["q"]["lookalike"]),
                            neg_frame=negf, spur_frame=spur_rate))
        print(f"b={b} L={L} done {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)

    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def fmt(x):
        return (f"| {x['b']} | {x['L']} | {x['m']} | {x['r']} | {x['g']} | {x['t']} | {x['vouchers']} "
                f"({x['vouchers_kept']:.1f}) | {x['ref_keys']:.1f} | "
                f"{x['keys_per_h']:,.0f} | {x['n_plain']}/{len(found)} ({x['rec_plain']:.0%}) | "
                f"{x['n_all']}/{len(pos)} ({x['rec_all']:.0%}) | {x['n_neg']}/{len(neg)} ({x['neg_open']:.1%}) | "
                f"{x['n_neg_look']}/{n_look} + {x['n_neg_other']}/{len(neg) - n_look} | "
                f"{x['neg_frame']:.2%} | {x['spur_frame']:.2%} |")

    head = ("| b | L | m | r | g | t | vouchers/frame (mean sent) | keys/ref frame | table keys/ref h | recall of plain | "
            "recall all pos | negatives opened | of which lookalike + other | neg frame coll. | pos non-copy frame coll. |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    q = np.quantile
    lines = [f"# Private-mode key grid on the training part ({bench}) only; vectors: {args.transform}", "",
             f"Machine: {machine()}. Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{time.monotonic() - t0:.0f} s.", "",
             f"{len(Q)} queries ({len(pos)} positive, {len(neg)} negative), {len(allf)} query frames; "
             f"{len(refs)} references, {len(R)} reference frames ({ref_hours:.3f} h at 1 frame/s). "
             f"Plain matching (cnn) finds {len(found)}/{len(pos)} copies; {len(plain_false)} negatives "
             f"with a cnn match.", "",
             f"Cosine context (no hashing): best true-segment cosine per copy frame: median {np.median(cos_true):.3f}, "
             f"10/25/75 % {q(cos_true, .1):.3f}/{q(cos_true, .25):.3f}/{q(cos_true, .75):.3f} (n={len(cos_true)}); "
             f"best any-reference cosine per negative frame: median {np.median(cos_neg):.3f}, 90/99 % "
             f"{q(cos_neg, .9):.3f}/{q(cos_neg, .99):.3f}, max {cos_neg.max():.3f} (n={len(cos_neg)}).", ""]
    lines += [f"{n_look} of the {len(neg)} negatives are lookalikes (same family as a reference, no copied frame).", "",
              "## Ideal key (cosine >= tau to some reference frame; the bound LSH approximates)", "",
              "| tau | t | recall of plain | recall all pos | negatives opened | of which lookalike |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {tau} | {t} | {a}/{len(found)} | {b_}/{len(pos)} ({b_ / max(1, len(pos)):.0%}) | {c}/{len(neg)} "
              f"({c / max(1, len(neg)):.1%}) | {e}/{n_look} |" for tau, t, a, b_, c, e in ideal] + [""]
    lines += ["## Ideal normalised key (max over reference frames of cosine - background similarity > delta; "
              "plain matching's frame hit is delta = 0)", "",
              "| delta | t | recall of plain | recall all pos | negatives opened | of which lookalike |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {dl} | {t} | {a}/{len(found)} | {b_}/{len(pos)} ({b_ / max(1, len(pos)):.0%}) | {c}/{len(neg)} "
              f"({c / max(1, len(neg)):.1%}) | {e}/{n_look} |" for dl, t, a, b_, c, e in ideal_adj] + [""]
    rows_ok = [x for x in rows if x["neg_open"] <= 0.02]
    best = sorted(rows_ok, key=lambda x: (-x["rec_plain"], -x["rec_all"], x["neg_open"], x["vouchers"],
                                          x["keys_per_h"]))
    lines += ["## Best schemes with negatives opened <= 2 % (by recall of plain, then recall of all positives)", "",
              head] + [fmt(x) for x in best[:25]] + [""]
    # frontier: per vouchers budget, best recall_all at neg_open <= 2%
    lines += ["## Per t: best recall of all positives at negatives opened <= 1 % / <= 2 % / <= 5 %", "", head]
    for t in TS:
        for cap in (0.01, 0.02, 0.05):
            c = [x for x in rows if x["t"] == t and x["neg_open"] <= cap]
            if c:
                x = max(c, key=lambda x: (x["rec_all"], x["rec_plain"], -x["vouchers"], -x["keys_per_h"]))
                lines.append(fmt(x) + f" cap {cap:.0%}")
    lines += ["", "## Full grid, t = 2 and 3, r = 0 (the rest in the CSV)", "", head]
    lines += [fmt(x) for x in rows if x["t"] in (2, 3) and x["r"] == 0 and x["g"] == "-"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.csv} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
