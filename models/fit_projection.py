"""Recipe of ``models/effnet_lite0_gem_pca256.npz``: learned whitening + background set + threshold.

Data rule: only the *training* split of ``../shared/clips`` (``benchmarks/clip_split.tsv``, each
``dup_group`` whole on one side) and videos/frames this project generates. Nothing from the
evaluation split is read.

Steps (all on CPU, a few minutes on 2 cores):

1. Decode every training clip at ``--fps`` (2) frames per second, 224x224 RGB (the model's input).
2. For each frame make ``--pairs`` edited copies with :mod:`vmatch.augment` (crop, colour,
   grayscale, blur, noise, captions, borders, rotation, 9:16 re-framing, picture-in-picture over
   another training frame, low resolution).
3. Raw features: GeM-pooled EfficientNet-Lite0 head (flip-averaged), L2-normalised.
4. Learned whitening (Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation",
   TPAMI 2018, sec. 3.4): ``P1 = Cs^-1/2`` with ``Cs`` the covariance of the differences of matching
   pairs (shrunk towards its mean eigenvalue by ``--shrink``), then PCA of the whitened data; keep the
   ``--dim`` leading directions. Embedding = L2-normalise((normalise(raw) - mean) @ components).
5. Background set (score normalisation, VSC 2022 style): embeddings of training frames at 1 fps plus
   generated uninformative frames (solid colours, gradients, text slides, noise).
6. Threshold: two folds over the training clips. In each fold half the clips are background, a
   quarter references, a quarter unrelated queries (negatives); edited copies of reference segments
   inside unrelated footage are the positives. The threshold is set above the highest negative
   pair score plus a margin, and the figures are written beside the artifact
   (``effnet_lite0_gem_pca256.json``).

Run: ``python models/fit_projection.py`` (then ``python -m pytest tests/test_models_artifact.py``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmatch.augment import augment  # noqa: E402
from vmatch.decode import iter_frames  # noqa: E402
from vmatch.embed import TorchEmbedder, tune_cpu_allocator  # noqa: E402
from vmatch.models import file_sha256, get_model_spec  # noqa: E402
from vmatch.synth import resize, scene_frames, uninformative_frames  # noqa: E402


def training_clips(clips_dir: Path, split_file: Path) -> list[tuple[Path, str]]:
    """Training clips of the split, each with its ``dup_group`` (its file name when in no group)."""
    with open(split_file, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = [(clips_dir / r["filename"], r["dup_group"] or r["filename"]) for r in rows if r["split"] == "train"]
    missing = [p for p, _ in out if not p.is_file()]
    if missing:
        raise SystemExit(f"missing training clips: {missing[:3]}...")
    return out


def decode_clip(path: Path, fps: float, size=(224, 224)) -> tuple[np.ndarray, np.ndarray]:
    ts, fr = [], []
    for t, rgb in iter_frames(path, fps=fps, size=size):
        if rgb.std() < 4.0:
            continue
        ts.append(t)
        fr.append(rgb)
    return np.asarray(ts), (np.stack(fr) if fr else np.zeros((0, size[0], size[1], 3), np.uint8))


#: Seeds of the generated footage used here. They are reserved (>= 900000): tests, the demo and
#: benchmarks use lower seeds, so none of their videos is in the background set.
SEED_TRAIN, SEED_CAL_REFS, SEED_CAL_NEGS, SEED_FILLER = 900_000, 910_000, 920_000, 930_000
#: Generated references and generated negative queries per calibration fold.
GENERATED_CAL = 30


#: The model's input (height, width); set by main() from the target model's spec.
SIZE = (224, 224)


def generated_frames(seed: int, n: int, fps: float) -> np.ndarray:
    """Generated footage as the decoder hands it to the CNN: even seeds 16:9 (320x180) squashed to
    the input size, odd seeds square. Tests and the demo use 16:9 generated clips."""
    h, w = SIZE
    if seed % 2 == 0:
        return resize(scene_frames(seed, width=320, height=180, n_frames=n, fps=fps), height=h, width=w)
    square = scene_frames(seed, width=224, height=224, n_frames=n, fps=fps)
    return square if (h, w) == (224, 224) else resize(square, height=h, width=w)


def calibration_frames(seed: int, n: int) -> np.ndarray:
    """Generated footage for calibration at 1 frame/s, in the sizes tests and demos use
    (160x90, 320x180, 224x224 by ``seed % 3``), squashed to the input size as the decoder does."""
    w, h = ((160, 90), (320, 180), (224, 224))[seed % 3]
    return resize(scene_frames(seed, width=w, height=h, n_frames=n, fps=1.0), height=SIZE[0], width=SIZE[1])


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def learned_whitening(x: np.ndarray, xa: np.ndarray, dim: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean, components [D, dim]) from matched pairs (x[i], xa[i]) of normalised raw features."""
    allx = np.concatenate([x, xa]).astype(np.float64)
    mean = allx.mean(axis=0)
    diff = (x - xa).astype(np.float64)
    cs = diff.T @ diff / diff.shape[0]
    mu = np.trace(cs) / cs.shape[0]
    cs = (1 - shrink) * cs + shrink * mu * np.eye(cs.shape[0])
    ev, evec = np.linalg.eigh(cs)
    p1 = evec @ np.diag(ev ** -0.5) @ evec.T
    y = (allx - mean) @ p1
    cd = y.T @ y / y.shape[0]
    ev2, evec2 = np.linalg.eigh(cd)
    order = np.argsort(ev2)[::-1][:dim]
    comps = p1 @ evec2[:, order]
    return mean.astype(np.float32), comps.astype(np.float32)


def project(raw: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    return l2n((l2n(raw) - mean) @ comps)


def pair_eval(q: np.ndarray, db: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Edited frame q[i] against the originals db (one row per frame, clip ``labels``): the share of
    queries whose original db[i] scores above every frame of *another* clip, and the mean margin."""
    s = q @ db.T
    pos = np.diag(s).copy()
    s[labels[:, None] == labels[None, :]] = -np.inf
    neg = s.max(axis=1)
    return float(np.mean(pos > neg)), float(np.mean(pos - neg))


def calibrate(emb, frames, clip_of, raw, mean, comps, *, spec, groups, extra_bg, fps, seed, beta=1.0, copies=3):
    """Choose the global pair-score threshold on the training clips (two folds, see step 6).

    Returns (threshold, report). The threshold is the highest negative pair score seen plus a
    margin of 0.05, so that unrelated videos stay below it with room to spare.
    """
    import tempfile

    from vmatch.bank import Bank
    from vmatch.pipeline import MatchParams, ModelCalibration, match_embedding
    from vmatch.types import VideoEmbedding

    step = max(1, int(round(fps)))  # 1 sampled frame per second from the 2 fps decode
    rng = np.random.default_rng(seed + 7)
    clips = np.unique(clip_of)
    per_clip = {c: np.flatnonzero(clip_of == c)[::step] for c in clips}
    filler = generated_frames(SEED_FILLER, 60, 1.0)
    filler_p = project(emb.embed_raw_gem(filler), mean, comps)
    pos_scores, neg_scores, found = [], [], 0
    group_names = sorted(set(groups))
    for fold in (0, 1):
        # Folds over dup_groups: copies of one video are never reference and negative at once.
        order = [group_names[i] for i in rng.permutation(len(group_names))]
        side = {g: i % 2 for i, g in enumerate(order)}
        rest_g = [g for g in order if side[g] != fold]
        role = {g: ("ref" if i % 2 == 0 else "neg") for i, g in enumerate(rest_g)}
        bg_c = [c for c in clips if side[groups[c]] == fold]
        refs = [c for c in clips if role.get(groups[c]) == "ref"]
        negs = [c for c in clips if role.get(groups[c]) == "neg"]
        bgm = np.concatenate([project(raw[per_clip[c]], mean, comps) for c in bg_c] + [extra_bg])
        cal = ModelCalibration(bgm, threshold=0.0)
        with tempfile.TemporaryDirectory() as tmp:
            bank = Bank.open(tmp, create=True, model=spec)
            for c in refs:
                idx = per_clip[c]
                bank.add_embedding(VideoEmbedding(f"c{c}", np.arange(len(idx), dtype=float),
                                                  project(raw[idx], mean, comps), float(len(idx)), spec.model_id))
            for k in range(GENERATED_CAL):  # generated footage as references too: the tests' and demo's domain
                fr = calibration_frames(SEED_CAL_REFS + 100 * fold + k, 20)
                bank.add_embedding(VideoEmbedding(f"s{k}", np.arange(20, dtype=float),
                                                  project(emb.embed_raw_gem(fr), mean, comps), 20.0, spec.model_id))
            queries = []
            for c in [c for c in refs for _ in range(copies)]:  # positives: edited segment in generated footage
                idx = per_clip[c]
                n = len(idx)
                if n < 3:
                    continue
                ln = int(rng.integers(3, min(n, 20) + 1))
                a = int(rng.integers(0, n - ln + 1))
                qseed = int(rng.integers(1 << 30))
                edited = np.stack([augment(frames[i], np.random.default_rng(qseed), other=filler[k % 60])
                                   for k, i in enumerate(idx[a:a + ln])])
                ep = project(emb.embed_raw_gem(edited), mean, comps)
                pre, post = int(rng.integers(0, 8)), int(rng.integers(0, 8))
                feats = np.concatenate([filler_p[:pre], ep, filler_p[30:30 + post]])
                queries.append((f"c{c}", feats))
            for c in negs:  # negatives: other training clips, whole
                queries.append((None, project(raw[per_clip[c]], mean, comps)))
            for k in range(GENERATED_CAL):  # and generated footage
                fr = calibration_frames(SEED_CAL_NEGS + 100 * fold + k, 20)
                queries.append((None, project(emb.embed_raw_gem(fr), mean, comps)))
            for truth, feats in queries:
                q = VideoEmbedding("q", np.arange(len(feats), dtype=float), feats, float(len(feats)), spec.model_id)
                rep = match_embedding(bank, q, calibration=cal, min_score=-1.0, params=MatchParams(beta=beta))
                if truth is None:
                    neg_scores.append(max([m.score for m in rep.matches], default=0.0))
                else:
                    s = [m.score for m in rep.matches if m.reference == truth]
                    pos_scores.append(s[0] if s else 0.0)
                    found += bool(rep.matches) and rep.matches[0].reference == truth
            bank.close()
    neg = np.asarray(neg_scores)
    pos = np.asarray(pos_scores)
    threshold = float(round(neg.max() + 0.05, 3))
    report = {
        "positives": int(pos.size),
        "negatives": int(neg.size),
        "negative_score_max": float(neg.max()),
        "negative_score_p90": float(np.quantile(neg, 0.9)),
        "positive_score_median": float(np.median(pos)),
        "positive_recall_at_threshold": float(np.mean(pos >= threshold)),
        "positive_top1_correct": found / max(1, pos.size),
        "note": "whitening was fitted on all training clips, so these figures are optimistic; "
        "the benchmark (issue 4) measures on the evaluation split",
    }
    print(f"calibration: {report}", file=sys.stderr)
    return threshold, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "clips")
    ap.add_argument("--split", type=Path, default=ROOT / "benchmarks" / "clip_split.tsv")
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--pairs", type=int, default=2, help="edited copies per training frame")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shrink", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", type=int, default=16, help="generated scene clips added to training (30 s each)")
    ap.add_argument("--cache", type=Path, default=None, help="reuse/store raw features here (speeds up re-fits)")
    ap.add_argument("--model", default="effnet-lite0-gem",
                    help="registered model whose projection is fitted (its input size, flip averaging, file name)")
    ap.add_argument("--flip-share", type=float, default=None,
                    help="share of edited copies also mirrored (default: 0 for flip-averaged models, 0.5 for "
                         "single-pass ones, so that the whitening learns to ignore mirroring)")
    ap.add_argument("--out", type=Path, default=None, help="default: models/<the model's projection file>")
    args = ap.parse_args(argv)

    global SIZE
    target = get_model_spec(args.model)
    if not target.projection:
        raise SystemExit(f"model {args.model!r} has no projection file to fit")
    SIZE = tuple(target.input_size)
    out = args.out or ROOT / "models" / target.projection
    flip_share = args.flip_share if args.flip_share is not None else (0.0 if target.hflip_tta else 0.5)
    t0 = time.time()
    tune_cpu_allocator()
    rng = np.random.default_rng(args.seed)
    # The same network, pooling and flip averaging as the target, without projection (raw GeM).
    raw_spec = dataclasses.replace(target, name=target.name + "-raw", projection="", projection_sha256="", dim=1280)
    emb = TorchEmbedder(raw_spec, device="cpu", batch_size=32)
    clips_g = training_clips(args.clips, args.split)
    clips = [p for p, _ in clips_g]
    frames, clip_of, times = [], [], []
    for ci, p in enumerate(clips):
        ts, fr = decode_clip(p, args.fps, size=SIZE)
        frames.append(fr)
        clip_of += [ci] * len(fr)
        times.append(ts)
        print(f"  {p.name}: {len(fr)} frames", file=sys.stderr)
    n_real = sum(len(f) for f in frames)
    for k in range(args.synthetic):  # generated scenes: more variety than the few training clips
        fr = generated_frames(SEED_TRAIN + k, int(30 * args.fps), args.fps)
        frames.append(fr)
        clip_of += [len(clips) + k] * len(fr)
    frames = np.concatenate(frames)
    clip_of = np.asarray(clip_of)
    n = frames.shape[0]
    print(f"{len(clips)} training clips ({n_real} frames) + {args.synthetic} generated clips; "
          f"{n} frames in {time.time() - t0:.0f}s", file=sys.stderr)

    if args.cache is not None and args.cache.is_file():
        with np.load(args.cache, allow_pickle=False) as z:
            raw, xa, xb = z["raw"], z["xa"], z["xb"]
    else:
        raw = emb.embed_raw_gem(frames)
        pairs_a, pairs_b = [], []
        for k in range(args.pairs):
            others = rng.integers(0, n, size=n)
            edited = np.stack([augment(frames[i], rng, other=frames[others[i]]) for i in range(n)])
            if flip_share > 0:  # mirrored copies are positives too: single-pass models learn to ignore mirroring
                flip = rng.random(n) < flip_share
                edited[flip] = edited[flip][:, :, ::-1]
            pairs_a.append(raw)
            pairs_b.append(emb.embed_raw_gem(edited))
            print(f"  pair set {k + 1}/{args.pairs} done ({time.time() - t0:.0f}s)", file=sys.stderr)
        xa = l2n(np.concatenate(pairs_a))
        xb = l2n(np.concatenate(pairs_b))
        if args.cache is not None:
            np.savez(args.cache, raw=raw, xa=xa, xb=xb)

    # Held-out check of the whitening: fit on clips with even index, evaluate on the odd ones.
    ev_mask = np.tile(clip_of % 2 == 1, args.pairs)
    ev1 = clip_of % 2 == 1  # the held-out clips, first pair set only: each original once
    qe, de, le = xb[: n][ev1], xa[: n][ev1], clip_of[ev1]
    held = {}
    for shrink in (0.02, 0.05, 0.1, 0.2, 0.4, 0.7):
        m, c = learned_whitening(xa[~ev_mask], xb[~ev_mask], args.dim, shrink)
        held[shrink] = pair_eval(project(qe, m, c), project(de, m, c), le)
    base = pair_eval(qe, de, le)
    print(f"held-out rank-1 / margin: raw {base}; learned whitening {held}", file=sys.stderr)
    shrink = max(held, key=lambda s: held[s][1]) if args.shrink < 0 else args.shrink
    mean, comps = learned_whitening(xa, xb, args.dim, shrink)

    # Background: training frames at ~1 fps plus generated uninformative frames.
    step = max(1, int(round(args.fps)))
    bg_frames_raw = raw[:n_real:step]  # real training frames only
    unin = uninformative_frames(SIZE)
    synth_raw = raw[n_real::step]  # generated scenes: suppress "looks like generated footage" matches
    unin_p = project(emb.embed_raw_gem(unin), mean, comps)
    bg = np.concatenate([project(bg_frames_raw, mean, comps), unin_p, project(synth_raw, mean, comps)])

    threshold, cal_report = calibrate(
        emb, frames[:n_real], clip_of[:n_real], raw[:n_real], mean, comps,
        groups=[g for _, g in clips_g],
        extra_bg=np.concatenate([unin_p, project(synth_raw, mean, comps)]),
        spec=target, fps=args.fps, seed=args.seed,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        mean=mean,
        components=comps,
        background=bg.astype(np.float16),
        threshold=np.float32(threshold),
    )
    tmp.replace(out)
    meta = {
        "recipe": f"models/fit_projection.py --model {args.model}",
        "model": args.model,
        "input_size": list(SIZE),
        "hflip_tta": target.hflip_tta,
        "flip_share": flip_share,
        "training_clips": [p.name for p in clips],
        "frames": int(n),
        "fps": args.fps,
        "pairs_per_frame": args.pairs,
        "dim": args.dim,
        "shrink": shrink,
        "seed": args.seed,
        "heldout_rank1_margin_raw": base,
        "heldout_rank1_margin_whitened": {str(k): v for k, v in held.items()},
        "background_frames": int(bg.shape[0]),
        "threshold": threshold,
        "calibration": cal_report,
        "seconds": round(time.time() - t0, 1),
    }
    meta["sha256"] = file_sha256(out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
