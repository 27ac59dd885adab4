#!/usr/bin/env python3
"""Run the matching benchmark made by bench_generate.py and report the figures.

    python benchmarks/bench_run.py --bench benchmarks/work/bench [--systems vmatch,vpdq,videohash]

* vmatch: a fresh bank (``benchmarks/work/bank_bench``), the references indexed with
  ``index_videos`` (fps 1), every query matched with ``min_score=-1`` (every candidate pair with
  its score), figures at the engine's own threshold (``report.threshold``).
* vpdq (PyPI ``vpdq``, Meta's video PDQ), when importable: one hash per second
  (``computeHash(path, seconds_per_hash=1)``), its standard rule brute-forced in numpy: frames of
  quality >= 50, a query frame matches a reference when some reference frame is within Hamming
  distance 31; score = query-match % (share of the query's frames that match), threshold 80 %.
  Its segment = the span of matched query frames x the span of the reference frames they matched.

* videohash (PyPI ``videohash``), when its own venv exists (``--videohash-python``; it needs
  ``pillow<10`` and the FFmpeg binary, so it never shares vmatch's environment): one 64-bit hash
  per video, score = 1 - Hamming/64, threshold = its ``is_similar`` rule (Hamming <= 10).

``--results benchmarks/RESULTS.md`` also replaces the part of that file between
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` with the tables and puts the plots beside it
(``benchmarks/plots/``). ``benchmarks/run_benchmark.sh`` does all of it in one command.

Metrics (bench_metrics.py): pair micro-AP, recall at precision 0.90 / 0.99, VSC 2022 segment AP,
then at the system's threshold: pair precision / recall, false matches on negative queries,
wrong-reference pairs on positive queries, mean IoU of the located query interval of detected
positives, recall per edit family. Throughput: seconds of video / wall seconds (x real time),
for indexing and for matching (decode + embed + search + align), measured here.

Writes benchmarks/work/bench_results.md (+ .json), predictions_<system>.csv and the plots
bench_pr_curve.png, bench_recall_per_family.png next to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine, replace_section  # noqa: E402
import bench_metrics as bm  # noqa: E402

HERE = Path(__file__).resolve().parent


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------------------
# Bench files
# --------------------------------------------------------------------------------------------------


def load_bench(bench: Path):
    refs = []
    for line in (bench / "references.txt").read_text().splitlines():
        if line.strip():
            rid, path = line.split("\t")
            refs.append((rid, Path(path)))
    with open(bench / "queries.csv", newline="") as f:
        queries = list(csv.DictReader(f))
    with open(bench / "ground_truth.csv", newline="") as f:
        gt_rows = list(csv.DictReader(f))
    gts = [
        bm.Box(r["query_id"], r["reference_id"], float(r["query_start"]), float(r["query_end"]),
               float(r["reference_start"]), float(r["reference_end"]))
        for r in gt_rows
    ]
    fam = {(r["query_id"], r["reference_id"]): r["family"] for r in gt_rows}
    return refs, queries, gts, fam


def transcode_refs(refs, folder: Path, gop_s: float):
    """The references re-encoded as a platform stores uploads (H.264, x264 veryfast CRF 23, a
    keyframe every ``gop_s`` seconds, B-frames; display orientation and aspect applied, even size),
    cached in ``folder``. Same reference ids; only the references change, never the queries."""
    from fractions import Fraction

    import av

    from vmatch import synth
    from vmatch.decode import iter_frames

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for rid, path in refs:
        dst = folder / f"{rid}.mp4"
        if not dst.exists():
            with av.open(str(path)) as c:
                rate = c.streams.video[0].average_rate or Fraction(25)
            rate = Fraction(rate).limit_denominator(1001) if 1 <= float(rate) <= 120 else Fraction(25)
            frames = [f for _, f in iter_frames(path, fps=float(rate) * 1.001, size=None)]
            h, w = frames[0].shape[:2]
            h2, w2 = h - h % 2, w - w % 2
            tmp = dst.with_suffix(".tmp.mp4")
            synth.write_video(tmp, (f[:h2, :w2] for f in frames), fps=rate, codec="libx264", crf=23,
                              preset="veryfast", gop=max(1, int(round(gop_s * float(rate)))),
                              codec_options={"bf": "3"})
            tmp.replace(dst)
        out.append((rid, dst))
    return out


# --------------------------------------------------------------------------------------------------
# Systems: each returns predictions (Boxes), threshold and timings
# --------------------------------------------------------------------------------------------------


def run_vmatch(refs, queries, workdir: Path, *, ref_decode=None, model: str | None = None, precision: str = "fp32",
               verify: bool = True) -> dict:
    """vmatch on the benchmark; ``precision`` and ``ref_decode`` (a ``vmatch.options.DecodeOptions``, default: the
    default one) are the CNN arithmetic and the decoding and sampling of the reference indexing (queries: fp32,
    1 frame/s). ``verify=False``: the CNN score alone, no keypoints extracted or stored (vmatch before pair
    verification, issue 14: the cost baseline)."""
    import dataclasses

    from vmatch import Bank
    from vmatch.options import DecodeOptions
    from vmatch.embed import make_embedder
    from vmatch.match import MatchParams
    from vmatch.pipeline import index_videos

    bank_dir = workdir / "bank_bench"
    if bank_dir.exists():
        shutil.rmtree(bank_dir)
    preds: list[bm.Box] = []
    errors = []
    decode = dataclasses.replace(ref_decode or DecodeOptions(), keypoints="reference" if verify else "none")
    with Bank.open(bank_dir, create=True, device="cpu", model=model) as bank:
        t = time.monotonic()
        bank.set_embedder(make_embedder(bank.spec, device="cpu", precision=precision))  # not counted
        load_s = time.monotonic() - t
        idx_s, idx_video_s = 0.0, 0.0
        for rid, path in refs:
            s = index_videos(bank, [path], decode=decode, ref_id=rid)
            idx_s += s.elapsed
            idx_video_s += s.seconds
            for p, msg in s.failed:
                errors.append(f"index {p}: {msg}")
        bank.save_index()
        if precision != "fp32":
            bank.set_embedder(make_embedder(bank.spec, device="cpu"))  # queries are matched in fp32
        m_s, m_video_s, threshold = 0.0, 0.0, None
        for q in queries:
            t = time.monotonic()
            rep = bank.match(q["path"], min_score=-1.0, params=MatchParams(verify=verify))
            m_s += time.monotonic() - t
            if rep.error:
                errors.append(f"match {q['query_id']}: {rep.error}")
                continue
            m_video_s += rep.duration
            threshold = rep.threshold
            for m in rep.matches:
                if not m.segments:  # a pair score without a segment: keep it for pair metrics
                    preds.append(bm.Box(q["query_id"], m.reference, 0, 0, 0, 0, m.score))
                for sg in m.segments:
                    preds.append(bm.Box(q["query_id"], m.reference, sg.query_start, sg.query_end,
                                        sg.reference_start, sg.reference_end, sg.score))
    return {
        "name": "vmatch" if verify else "vmatch-unverified", "preds": preds, "threshold": float(threshold),
        "index_s": idx_s, "index_video_s": idx_video_s, "match_s": m_s, "match_video_s": m_video_s,
        "load_s": load_s, "errors": errors,
        "note": "EfficientNet-Lite0 GeM + whitening, 1 frame/s, CPU; scores from report; threshold = report.threshold"
                + ("; pairs verified with ORB + SIFT keypoints and RANSAC, fused score (vmatch/verify.py)" if verify
                   else "; unverified CNN scores, no keypoints (before issue 14)")
                + ("; references indexed with skip_nonref" if decode.skip_nonref else "")
                + (f"; references indexed in keyframe mode (GOPs <= {decode.keyframe_gop:g} s)" if decode.keyframe_gop else "")
                + (f"; model {model}" if model else "")
                + (f"; references embedded in {precision}" if precision != "fp32" else "")
                + (f"; references sampled at {decode.fps:g} frame/s" if decode.fps != 1.0 else "")
                + ("; references decoded without the loop filter" if decode.skip_loop_filter else ""),
    }


VPDQ_HAMMING = 31
VPDQ_QUALITY = 50
VPDQ_THRESHOLD = 80.0


def _vpdq_hash(vpdq, path: Path):
    feats = vpdq.computeHash(str(path), seconds_per_hash=1)
    good = [f for f in feats if f.quality >= VPDQ_QUALITY]
    if not good:
        return np.zeros((0, 32), np.uint8), np.zeros(0), len(feats)
    bits = np.stack([np.frombuffer(bytes.fromhex(f.hex), np.uint8) for f in good])
    ts = np.array([float(f.timestamp) for f in good])
    return bits, ts, len(feats)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of two uint8 [n, 32] arrays of 256-bit hashes."""
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.int32)


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


def video_duration(path: Path) -> float:
    from vmatch.decode import probe

    return float(probe(path).duration)


def run_vpdq(refs, queries) -> dict:
    import vpdq

    errors = []
    ref_h = {}
    idx_s = idx_video_s = 0.0
    for rid, path in refs:
        t = time.monotonic()
        bits, ts, n = _vpdq_hash(vpdq, path)
        idx_s += time.monotonic() - t
        idx_video_s += video_duration(path)
        if len(bits) == 0:
            errors.append(f"index {rid}: no hash of quality >= {VPDQ_QUALITY} ({n} frames hashed)")
        ref_h[rid] = (bits, ts)
    preds = []
    m_s = m_video_s = 0.0
    for q in queries:
        t = time.monotonic()
        qb, qt, n = _vpdq_hash(vpdq, Path(q["path"]))
        for rid, (rb, rt) in ref_h.items():
            if len(qb) == 0 or len(rb) == 0:
                continue
            d = hamming_matrix(qb, rb)
            hit = d <= VPDQ_HAMMING
            qhit = hit.any(axis=1)
            score = 100.0 * qhit.mean()
            if score <= 0:
                continue
            rhit = hit.any(axis=0)
            preds.append(bm.Box(q["query_id"], rid, float(qt[qhit].min()), float(qt[qhit].max()),
                                float(rt[rhit].min()), float(rt[rhit].max()), float(score)))
        m_s += time.monotonic() - t
        m_video_s += float(q["duration"])
        if len(qb) == 0:
            errors.append(f"match {q['query_id']}: no hash of quality >= {VPDQ_QUALITY} ({n} frames hashed)")
    return {
        "name": "vpdq", "preds": preds, "threshold": VPDQ_THRESHOLD,
        "index_s": idx_s, "index_video_s": idx_video_s, "match_s": m_s, "match_video_s": m_video_s,
        "load_s": 0.0, "errors": errors,
        "note": f"vpdq {_dist_version('vpdq')}: 1 hash/s, quality >= {VPDQ_QUALITY}, Hamming <= {VPDQ_HAMMING}, "
                f"score = query-match %, threshold {VPDQ_THRESHOLD:.0f} %",
    }


VIDEOHASH_BITS = 64
VIDEOHASH_SIMILAR = 10  # videohash's is_similar: Hamming <= ceil(15 % of 64 bits)


def _videohash_many(python: str, paths: list[Path]) -> dict[str, dict]:
    """Hash files with benchmarks/peer_videohash.py in videohash's own interpreter."""
    out = subprocess.run([python, str(HERE / "peer_videohash.py"), *map(str, paths)],
                         capture_output=True, text=True)
    recs = {}
    for line in out.stdout.splitlines():
        if line.strip():
            r = json.loads(line)
            recs[r["path"]] = r
    if out.returncode not in (0, 1) or not recs:
        raise RuntimeError(f"peer_videohash.py failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return recs


def run_videohash(refs, queries, python: str) -> dict:
    """videohash (PyPI): one 64-bit hash per video (collage of 1 frame/s, wavelet hash + dominant
    colour); score = 1 - Hamming/64; its own rule ``is_similar`` (Hamming <= 10) as threshold.
    It does not localise: its segment is the whole query x the whole reference."""
    errors = []
    ref_recs = _videohash_many(python, [p for _, p in refs])
    ref_h, idx_s, idx_video_s = {}, 0.0, 0.0
    for rid, path in refs:
        r = ref_recs.get(str(path), {"error": "no output"})
        if "error" in r:
            errors.append(f"index {rid}: {r['error']}")
            continue
        idx_s += r["seconds"]
        idx_video_s += video_duration(path)
        ref_h[rid] = (int(r["hash"], 2), video_duration(path))
    q_recs = _videohash_many(python, [Path(q["path"]) for q in queries])
    preds, m_s, m_video_s = [], 0.0, 0.0
    for q in queries:
        r = q_recs.get(str(Path(q["path"])), {"error": "no output"})
        if "error" in r:
            errors.append(f"match {q['query_id']}: {r['error']}")
            continue
        t = time.monotonic()
        qh, qd = int(r["hash"], 2), float(q["duration"])
        for rid, (rh, rd) in ref_h.items():
            score = 1.0 - bin(qh ^ rh).count("1") / VIDEOHASH_BITS
            preds.append(bm.Box(q["query_id"], rid, 0.0, qd, 0.0, rd, score))
        m_s += r["seconds"] + time.monotonic() - t
        m_video_s += qd
    return {
        "name": "videohash", "preds": preds, "threshold": 1.0 - VIDEOHASH_SIMILAR / VIDEOHASH_BITS,
        "index_s": idx_s, "index_video_s": idx_video_s, "match_s": m_s, "match_video_s": m_video_s,
        "load_s": 0.0, "errors": errors,
        "note": f"videohash {_peer_version(python, 'videohash')} (own venv, pillow<10, FFmpeg binary): one 64-bit hash "
                f"per video, score = 1 - Hamming/64, threshold = its is_similar rule (Hamming <= {VIDEOHASH_SIMILAR}); "
                "no localisation (segment = whole videos); timings = its own hashing time per file",
    }


def _peer_version(python: str, dist: str) -> str:
    out = subprocess.run([python, "-c", f"from importlib.metadata import version; print(version({dist!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def evaluate(sysres: dict, gts, fam, queries) -> dict:
    preds = sysres["preds"]
    thr = sysres["threshold"]
    scored = bm.pair_scores(preds)
    gt_pairs = {g.pair() for g in gts}
    negatives = [q["query_id"] for q in queries if q["kind"] == "negative"]
    curve = bm.pair_pr(gt_pairs, scored)
    seg_ap, seg_curve = bm.segment_ap(gts, [p for p in preds if p.query_end > p.query_start or p.ref_end > p.ref_start])
    r90, t90 = bm.recall_at_precision(curve, 0.90)
    r99, t99 = bm.recall_at_precision(curve, 0.99)
    above = {k: s for k, s in scored.items() if s >= thr}
    tp = sum(1 for k in above if k in gt_pairs)
    ious = bm.localisation_iou(gts, preds, thr)
    fm, nneg = bm.false_matches(negatives, scored, thr)
    # negatives by look-alike family (issue 14): "" = unrelated footage
    by_family: dict[str, list[str]] = {}
    for q in queries:
        if q["kind"] == "negative":
            by_family.setdefault(q.get("lookalike", "") or "unrelated", []).append(q["query_id"])
    lookalike_fm = {f: bm.false_matches(qs, scored, thr) for f, qs in sorted(by_family.items())}
    # copies of look-alike references, by family
    la_pos = {}
    for q in queries:
        if q["kind"] == "positive" and q.get("lookalike"):
            d, n = la_pos.get(q["lookalike"], (0, 0))
            la_pos[q["lookalike"]] = (d + int(scored.get((q["query_id"], q["reference_id"]), -1e9) >= thr), n + 1)
    return {
        "system": sysres["name"], "note": sysres["note"], "threshold": thr,
        "pair_uap": bm.pair_micro_ap(gt_pairs, scored), "r_at_p90": r90, "thr_p90": t90,
        "r_at_p99": r99, "thr_p99": t99, "segment_ap": seg_ap,
        "precision_at_thr": tp / len(above) if above else 1.0, "recall_at_thr": tp / len(gt_pairs),
        "tp": tp, "n_gt": len(gt_pairs), "false_matches": fm, "n_negatives": nneg,
        "wrong_ref_pairs": bm.wrong_reference_pairs(gt_pairs, scored, thr, negatives),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"), "n_iou": len(ious),
        "family_recall": bm.recall_by_family(fam, scored, thr),
        "lookalike_false_matches": lookalike_fm, "lookalike_recall": dict(sorted(la_pos.items())),
        "index_x_rt": sysres["index_video_s"] / sysres["index_s"] if sysres["index_s"] else float("nan"),
        "match_x_rt": sysres["match_video_s"] / sysres["match_s"] if sysres["match_s"] else float("nan"),
        "index_s": sysres["index_s"], "index_video_s": sysres["index_video_s"],
        "match_s": sysres["match_s"], "match_video_s": sysres["match_video_s"], "load_s": sysres["load_s"],
        "errors": sysres["errors"],
        "_curve": curve, "_seg_curve": seg_curve,
    }


def fmt_thr(t):
    return "—" if t is None else f"{t:.3g}"


def markdown(results: list[dict], meta: dict) -> str:
    L = []
    L.append(f"# vmatch benchmark — {meta['bench']}")
    L.append("")
    L.append(f"Machine: {meta['machine']}, {meta['load_end']} at the end. Commit {meta['commit']}. "
             f"Run {meta['date']} ({meta['wall_s']:.0f} s wall).")
    L.append(f"Set: {meta['n_refs']} references ({meta['ref_video_s']:.0f} s of video), {meta['n_queries']} queries "
             f"({meta['n_pos']} with a copy, {meta['n_neg']} negatives incl. {meta['n_hardneg']} look-alikes), "
             f"{meta['query_video_s']:.0f} s of query video; seed {meta['seed']}."
             + (f" References re-encoded with a keyframe every {meta['ref_gop']:g} s (H.264 CRF 23) before indexing."
                if meta.get("ref_gop") else ""))
    L.append("")
    L.append("| system | pair µAP | R@P0.90 | R@P0.99 | segment AP | threshold | P@thr | R@thr | false matches on negatives | wrong-ref pairs | mean IoU (query interval) | index × RT | match × RT |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        L.append(
            f"| {r['system']} | {r['pair_uap']:.3f} | {r['r_at_p90']:.3f} (thr {fmt_thr(r['thr_p90'])}) | "
            f"{r['r_at_p99']:.3f} (thr {fmt_thr(r['thr_p99'])}) | {r['segment_ap']:.3f} | {r['threshold']:.3g} | "
            f"{r['precision_at_thr']:.3f} | {r['recall_at_thr']:.3f} ({r['tp']}/{r['n_gt']}) | "
            f"{r['false_matches']}/{r['n_negatives']} | {r['wrong_ref_pairs']} | {r['mean_iou']:.3f} (n={r['n_iou']}) | "
            f"{r['index_x_rt']:.1f} | {r['match_x_rt']:.1f} |"
        )
    L.append("")
    fams = sorted({f for r in results for f in r["family_recall"]})
    L.append("Recall per edit family at each system's threshold (detected / queries):")
    L.append("")
    L.append("| family | " + " | ".join(r["system"] for r in results) + " |")
    L.append("|---|" + "---|" * len(results))
    for f in fams:
        cells = []
        for r in results:
            d, n = r["family_recall"].get(f, (0, 0))
            cells.append(f"{d}/{n}")
        L.append(f"| {f} | " + " | ".join(cells) + " |")
    L.append("")
    la = sorted({f for r in results for f in r.get("lookalike_false_matches", {})})
    if la:
        L.append("Negatives flagged at each system's threshold, by look-alike family (flagged / negatives; "
                 "copies of that family's references found / copies):")
        L.append("")
        L.append("| look-alike family | " + " | ".join(f"{r['system']} flagged | {r['system']} copies found" for r in results) + " |")
        L.append("|---|" + "---|---|" * len(results))
        for f in la:
            cells = []
            for r in results:
                fm, n = r["lookalike_false_matches"].get(f, (0, 0))
                d, m = r["lookalike_recall"].get(f, (0, 0))
                cells += [f"{fm}/{n} ({100.0 * fm / n:.1f} %)" if n else "—", f"{d}/{m}" if m else "—"]
            L.append(f"| {f} | " + " | ".join(cells) + " |")
        L.append("")
    for r in results:
        L.append(f"* **{r['system']}**: {r['note']}. Indexing {r['index_video_s']:.0f} s of video in {r['index_s']:.1f} s"
                 f" (model load {r['load_s']:.1f} s not counted); matching {r['match_video_s']:.0f} s of video in {r['match_s']:.1f} s.")
        for e in r["errors"][:10]:
            L.append(f"  * error: {e}")
    L.append("")
    L.append("Definitions: pair µAP = VSC 2022 micro-AP over (query, reference) pairs ranked globally by score; "
             "R@P = largest recall at a threshold whose pair precision is ≥ P; segment AP = VSC 2022 matching-track "
             "metric (per-axis interval overlap, micro-averaged, sqrt of query×reference axes); P/R@thr = pair "
             "precision/recall at the system's threshold; mean IoU = IoU of the predicted and true query intervals "
             "of detected copies; × RT = seconds of video per wall second.")
    return "\n".join(L) + "\n"


def plots(results: list[dict], outdir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; no plots (pip install matplotlib)")
        return []
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in results:
        c = r["_curve"]
        axes[0].plot([0] + c.recalls, [1] + c.precisions, drawstyle="steps-post", label=f"{r['system']} (µAP {r['pair_uap']:.3f})")
        sc = r["_seg_curve"]
        axes[1].plot(sc.recalls, sc.precisions, label=f"{r['system']} (AP {r['segment_ap']:.3f})")
    for ax, title in zip(axes, ("pair level (query, reference)", "segment level (VSC 2022 matching)")):
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
    fig.tight_layout()
    p = outdir / "bench_pr_curve.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(str(p))
    fams = sorted({f for r in results for f in r["family_recall"]})
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(fams))
    for i, r in enumerate(results):
        vals = [r["family_recall"][f][0] / r["family_recall"][f][1] if f in r["family_recall"] else 0 for f in fams]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"{r['system']} (thr {r['threshold']:.3g})")
    ax.set_xticks(x)
    ax.set_xticklabels(fams, rotation=40, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall at threshold")
    ax.set_title("Recall per edit family")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = outdir / "bench_recall_per_family.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(str(p))
    return files


def write_predictions(path: Path, preds) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query_id", "ref_id", "query_start", "query_end", "ref_start", "ref_end", "score"])
        for p in preds:
            w.writerow([p.query_id, p.ref_id, round(p.query_start, 3), round(p.query_end, 3),
                        round(p.ref_start, 3), round(p.ref_end, 3), round(p.score, 5)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default="benchmarks/work/bench")
    ap.add_argument("--systems", default="vmatch,vpdq,videohash")
    ap.add_argument("--videohash-python", default=str(HERE / "work" / "venv-videohash" / "bin" / "python"),
                    help="interpreter of videohash's own venv (it needs pillow<10)")
    ap.add_argument("--out", default=None, help="output folder (default: the bench folder's parent)")
    ap.add_argument("--skip-nonref", action="store_true",
                    help="vmatch indexes the references with skip_nonref (the fast decode of issue 7)")
    ap.add_argument("--keyframe-gop", type=float, default=0.0, metavar="SECONDS",
                    help="vmatch indexes the references in keyframe mode (GOPs up to SECONDS decoded as their keyframe)")
    ap.add_argument("--model", default=None, help="vmatch's model (default: the default model)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="CNN arithmetic of vmatch's reference indexing (queries stay fp32)")
    ap.add_argument("--fast", action="store_true",
                    help="vmatch indexes the references as `vmatch index --fast` does (the fast reference mode: "
                         "vmatch.options.FAST_REFERENCE_MODE, bf16 on a CPU that has it)")
    ap.add_argument("--skip-loop-filter", action="store_true",
                    help="vmatch decodes the references without the deblocking filter")
    ap.add_argument("--ref-fps", type=float, default=1.0,
                    help="vmatch samples the references at this rate (queries stay at 1 frame/s)")
    ap.add_argument("--ref-gop", type=float, default=0.0, metavar="SECONDS",
                    help="re-encode the references with a keyframe every SECONDS (as platforms store uploads) "
                         "before indexing them; queries unchanged")
    ap.add_argument("--results", default=None,
                    help="also write the tables into this Markdown file between <!-- bench:begin --> and "
                         "<!-- bench:end --> (appended if absent) and the plots into plots/ beside it")
    args = ap.parse_args(argv)
    if args.fast:
        from vmatch.options import FAST_REFERENCE_MODE, fast_mode_precision

        args.skip_nonref = FAST_REFERENCE_MODE.skip_nonref
        args.keyframe_gop = FAST_REFERENCE_MODE.keyframe_gop
        args.ref_fps = FAST_REFERENCE_MODE.fps
        args.skip_loop_filter = FAST_REFERENCE_MODE.skip_loop_filter
        args.precision = "bf16" if fast_mode_precision("cpu") == "bf16" else "fp32"
    t_all = time.monotonic()
    bench = Path(args.bench)
    outdir = Path(args.out) if args.out else bench.resolve().parent
    outdir.mkdir(parents=True, exist_ok=True)
    refs, queries, gts, fam = load_bench(bench)
    if args.ref_gop:
        refs = transcode_refs(refs, outdir / f"refs_gop{args.ref_gop:g}", args.ref_gop)
    manifest = json.loads((bench / "manifest.json").read_text()) if (bench / "manifest.json").exists() else {}
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    mach = machine()
    print(f"machine: {mach}")
    results = []
    for s in systems:
        t = time.monotonic()
        if s in ("vmatch", "vmatch-unverified"):
            from vmatch.options import DecodeOptions

            ref_decode = DecodeOptions(fps=args.ref_fps, keyframe_gop=args.keyframe_gop, skip_nonref=args.skip_nonref,
                                       skip_loop_filter=args.skip_loop_filter)
            res = run_vmatch(refs, queries, outdir, ref_decode=ref_decode, model=args.model, precision=args.precision,
                             verify=s == "vmatch")
        elif s == "vpdq":
            try:
                import vpdq  # noqa: F401
            except ImportError as e:
                print(f"note: vpdq not importable ({e}); skipped (pip install vpdq)")
                continue
            res = run_vpdq(refs, queries)
        elif s == "videohash":
            py = Path(args.videohash_python)
            if not py.exists():
                print(f"note: {py} not found; videohash skipped (benchmarks/run_benchmark.sh makes its venv)")
                continue
            res = run_videohash(refs, queries, str(py))
        else:
            print(f"note: unknown system {s!r}; skipped")
            continue
        print(f"{s}: ran in {time.monotonic() - t:.1f} s")
        write_predictions(outdir / f"predictions_{s}.csv", res["preds"])
        results.append(evaluate(res, gts, fam, queries))
    meta = {
        "bench": str(bench), "machine": mach, "commit": git_rev(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.monotonic() - t_all, "n_refs": len(refs), "ref_gop": args.ref_gop,
        "load_end": "load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else "",
        "ref_video_s": results[0]["index_video_s"] if results else 0.0,
        "n_queries": len(queries), "n_pos": sum(q["kind"] == "positive" for q in queries),
        "n_neg": sum(q["kind"] == "negative" for q in queries),
        "n_hardneg": sum(q["kind"] == "negative" and bool(q.get("lookalike")) for q in queries), "seed": manifest.get("seed", "?"),
        "query_video_s": sum(float(q["duration"]) for q in queries),
    }
    md = markdown(results, meta)
    (outdir / "bench_results.md").write_text(md)
    (outdir / "bench_results.json").write_text(json.dumps(
        {"meta": meta, "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]}, indent=1, default=str))
    files = plots(results, outdir)
    if args.results:
        files += update_results(Path(args.results), md, files)
    print(md)
    print("wrote " + ", ".join([str(outdir / "bench_results.md")] + files))
    return 0


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_results(results_md: Path, md: str, plot_files: list[str]) -> list[str]:
    """Put ``md`` (and links to the plots, copied to ``plots/`` beside the file) between the
    bench markers of ``results_md``; written to a temporary file and renamed (never half-written)."""
    plot_dir = results_md.parent / "plots"
    plot_dir.mkdir(exist_ok=True)
    copied = []
    for f in plot_files:
        dst = plot_dir / Path(f).name
        shutil.copyfile(f, dst)
        copied.append(str(dst))
    body = md.replace("# vmatch benchmark", "### Benchmark run", 1)
    if copied:
        body += "\n" + "\n".join(f"![{Path(c).stem}](plots/{Path(c).name})" for c in copied) + "\n"
    replace_section(results_md, BEGIN, END, body)
    return copied


if __name__ == "__main__":
    sys.exit(main())
