"""Study of local-feature verifiers on a benchmark (issue 14): which local features give copies
content evidence that look-alikes do not get?

    python benchmarks/bench_run.py --bench benchmarks/work/train0 --systems vmatch-unverified --out benchmarks/work/t0u
    python benchmarks/verify_study.py --bench benchmarks/work/train0 \\
        --predictions benchmarks/work/t0u/predictions_vmatch-unverified.csv --methods orb,sift

For each query its 3 best references by unverified CNN score and its true pairs are verified on the
best aligned segment (as ``models/fit_verification.py`` does), with each method's keypoints; the
grey frames are decoded once and cached (``--cache``). For each method the grid of
``fit_verification.grid`` is scored and the best point flagging at most 1 % of negatives printed,
with the true pairs found per edit family. A study tool: methods are chosen on the training part.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "models"))


def grey_frames(path: Path, cache: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """(timestamps, grey work frames) of a video at 1 frame/s, as verification sees them."""
    import cv2

    from vmatch.decode import iter_frames, probe
    from vmatch.verify import work_size

    f = cache / (path.stem + ".npz")
    if f.exists():
        with np.load(f) as z:
            n = int(z["n"][0])
            return z["t"], [z[f"f{i}"] for i in range(n)]
    info = probe(path)
    aspect = info.width / info.height if info.width and info.height else 0.0
    ts, frames = [], []
    for t, rgb in iter_frames(path, fps=1.0, size=(224, 224)):
        g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        wh = work_size(rgb.shape[:2], aspect)
        frames.append(cv2.resize(g, wh, interpolation=cv2.INTER_LINEAR) if wh != (g.shape[1], g.shape[0]) else g)
        ts.append(t)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, t=np.asarray(ts), n=np.array([len(frames)]), **{f"f{i}": g for i, g in enumerate(frames)})
    return np.asarray(ts, np.float64), frames


class Method:
    """Keypoints + descriptors of grey frames, a matcher norm and a static-twin distance."""

    def __init__(self, name: str) -> None:
        import cv2

        self.name = name
        self.cv2 = cv2
        if name == "orb":
            self.det_ref = cv2.ORB_create(nfeatures=1024, scaleFactor=1.2, nlevels=6, edgeThreshold=15, patchSize=15,
                                          fastThreshold=10)
            self.det_q = cv2.ORB_create(nfeatures=512, scaleFactor=1.2, nlevels=6, edgeThreshold=15, patchSize=15,
                                        fastThreshold=10)
            self.norm, self.twin, self.maxd = cv2.NORM_HAMMING, 48, 64
        elif name.startswith("sift"):
            # sift, sift-c<contrast>, sift-s<largest keypoint size>
            c = float(name.split("-c")[1]) if "-c" in name else 0.04
            self.max_size = float(name.split("-s")[1].split("-")[0]) if "-s" in name else 1e9
            self.half = name.endswith("-h")  # detect on the frame at half size (coordinates scaled back)
            self.det_ref = cv2.SIFT_create(nfeatures=512, contrastThreshold=c)
            self.det_q = cv2.SIFT_create(nfeatures=384, contrastThreshold=c)
            self.norm, self.twin, self.maxd = cv2.NORM_L2, 160.0, 1e9
        else:
            raise SystemExit(f"unknown method {name}")

    def detect(self, g: np.ndarray, query: bool):
        half = getattr(self, "half", False)
        if half:
            g = self.cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=self.cv2.INTER_AREA)
        kp, d = (self.det_q if query else self.det_ref).detectAndCompute(g, None)
        if d is None or not kp:
            return np.zeros((0, 2), np.float32), np.zeros((0, 32 if self.norm != self.cv2.NORM_L2 else 128), np.uint8)
        if self.norm == self.cv2.NORM_L2:
            keep = [i for i, k in enumerate(kp) if k.size <= self.max_size]
            kp, d = [kp[i] for i in keep], d[keep]
            d = np.clip(np.round(d), 0, 255).astype(np.uint8).reshape(-1, 128)
            pts = np.array([k.pt for k in kp], np.float32).reshape(-1, 2)
            return (pts * 2.0 + 0.5 if half else pts), d
        return np.array([k.pt for k in kp], np.float32), d

    def dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.norm == self.cv2.NORM_HAMMING:
            return np.unpackbits(a ^ b, axis=1).sum(axis=1)
        return np.sqrt(((a.astype(np.float32) - b.astype(np.float32)) ** 2).sum(axis=1))


def static_flags(m: Method, frames: list, ts: np.ndarray, gap_s: float = 3.0, probes: int = 4, max_px: float = 4.0,
                 share: int = 4) -> list[np.ndarray]:
    out = []
    for j, (pj, dj) in enumerate(frames):
        far = np.flatnonzero(np.abs(ts - ts[j]) >= gap_s)
        hits = np.zeros(len(pj), np.int32)
        if len(pj) and len(far):
            picks = far[np.unique(np.linspace(0, len(far) - 1, min(probes, len(far))).round().astype(int))]
            for k in picks:
                pk, dk = frames[int(k)]
                if not len(pk):
                    continue
                dd = np.abs(pj[:, None, :] - pk[None, :, :]).max(axis=2)
                rows, cols = np.nonzero(dd <= max_px)
                if len(rows):
                    ok = m.dist(dj[rows], dk[cols]) <= m.twin
                    hits[np.unique(rows[ok])] += 1
            out.append(hits * share >= len(picks))
        else:
            out.append(np.zeros(len(pj), bool))
    return out


def inliers(m: Method, bf, q, r, cell_px: float = 16.0) -> int:
    cv2 = m.cv2
    pq, dq = q
    pr, dr, sr = r
    if len(dq) < 6 or len(dr) < 6:
        return 0
    ms = bf.knnMatch(dq if m.norm == cv2.NORM_HAMMING else dq.astype(np.float32),
                     dr if m.norm == cv2.NORM_HAMMING else dr.astype(np.float32), k=2)
    good = [x[0] for x in ms if len(x) == 2 and x[0].distance < 0.8 * x[1].distance and x[0].distance <= m.maxd]
    if len(good) < 6:
        return 0
    qi = np.fromiter((x.queryIdx for x in good), np.int64, len(good))
    ri = np.fromiter((x.trainIdx for x in good), np.int64, len(good))
    M, inl = cv2.estimateAffine2D(pq[qi], pr[ri], method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=500,
                                  confidence=0.99)
    if M is None or inl is None:
        return 0
    sx, sy = math.hypot(M[0, 0], M[1, 0]), math.hypot(M[0, 1], M[1, 1])
    if not (0.25 < sx < 4.0 and 0.25 < sy < 4.0):
        return 0
    inl = inl.ravel().astype(bool) & ~sr[ri]
    return int(len(np.unique(np.floor(pr[ri[inl]] / cell_px).astype(np.int64) @ np.array([1, 1 << 20]))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--methods", default="orb,sift")
    ap.add_argument("--cache", default="/tmp/vstudy")
    ap.add_argument("--threshold", type=float, default=0.203)
    ap.add_argument("--out", default=None, help="write the evidence rows (JSON lines) here")
    args = ap.parse_args(argv)
    from fit_verification import candidate_pairs, grid
    from vmatch.verify import frame_pairs

    bench = Path(args.bench)
    cache = Path(args.cache) / bench.name
    refs, qinfo, gt_pairs, best, keep = candidate_pairs(bench, Path(args.predictions))
    queries = list(qinfo.values())
    n_pos = len(gt_pairs)
    n_neg = sum(q["kind"] == "negative" for q in queries)
    all_rows = []
    for name in args.methods.split(","):
        m = Method(name)
        bf = m.cv2.BFMatcher(m.norm)
        t0 = time.monotonic()
        ref_feats = {}
        n_ref_frames = 0
        for rid, p in refs:
            ts, gs = grey_frames(Path(p), cache)
            fr = [m.detect(g, False) for g in gs]
            st = static_flags(m, fr, ts)
            kept = []
            for (pts, d), s in zip(fr, st):
                order = np.concatenate([np.flatnonzero(~s), np.flatnonzero(s)])[:256]
                kept.append((pts[order], d[order], s[order]))
            ref_feats[rid] = (ts, kept)
            n_ref_frames += len(gs)
        t_ref = time.monotonic() - t0
        rows = []
        qcache = {}
        t1 = time.monotonic()
        n_q_frames = 0
        for q, r in sorted(keep):
            if q not in qcache:
                qcache.clear()
                ts, gs = grey_frames(Path(qinfo[q]["path"]), cache)
                n_q_frames += len(gs)
                qcache[q] = (ts, [m.detect(g, True) for g in gs],
                             [m.detect(np.ascontiguousarray(g[:, ::-1]), True) for g in gs])
            qt, qf, qm = qcache[q]
            rt, rf = ref_feats[r]
            scores = []
            for i, js in frame_pairs(qt, rt, best[(q, r)][1], 6):
                b = 0
                for j in js:
                    b = max(b, inliers(m, bf, qf[i], rf[j]), inliers(m, bf, qm[i], rf[j]))
                scores.append(b)
            scores.sort(reverse=True)
            rows.append({"method": name, "query_id": q, "ref_id": r, "positive": (q, r) in gt_pairs,
                         "kind": qinfo[q]["kind"], "family": qinfo[q].get("family", ""),
                         "lookalike": qinfo[q].get("lookalike", ""), "cnn": best[(q, r)][0],
                         "best": scores[0] if scores else 0,
                         "second": scores[1] if len(scores) > 1 else (scores[0] if scores else 0)})
        t_q = time.monotonic() - t1
        all_rows += rows
        table = grid(rows, args.threshold, n_pos, n_neg)
        ok = [g for g in table if g["flag_rate"] <= 0.01]
        choice = max(ok or table, key=lambda g: (g["found"], -g["flagged"], g["statistic"] == "best", -g["lo"]))
        print(f"== {name}: refs {t_ref:.1f} s ({n_ref_frames} frames), queries {t_q:.1f} s ({n_q_frames} frames)")
        print(f"   best point <=1 %: {choice}")
        lo, hi, stat = choice["lo"], choice["hi"], choice["statistic"]
        fam_tot, fam_found = Counter(), Counter()
        for rr in rows:
            if rr["positive"]:
                fam_tot[rr["family"]] += 1
                w = min(1.0, max(0.0, (rr[stat] - lo) / (hi - lo)))
                fam_found[rr["family"]] += rr["cnn"] * w >= args.threshold
        print("   per family:", ", ".join(f"{k} {fam_found[k]}/{fam_tot[k]}" for k in sorted(fam_tot)))
        negs = sorted((rr[stat], rr["lookalike"], rr["query_id"]) for rr in rows if rr["kind"] == "negative")[-8:]
        print("   top negative evidence:", negs)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in all_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
