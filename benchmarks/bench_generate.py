#!/usr/bin/env python3
"""Generate the vmatch matching benchmark from the *eval* split of ../shared/clips.

    python benchmarks/bench_generate.py --clips ../shared/clips --out benchmarks/work/bench --seed 0

* References: one clip per copy group (the longest member; the other members become *natural*
  copy queries, never negatives), one member of each hard-negative group (its other members become
  hard negative queries), and the ungrouped eval clips >= 3 s except a few held out.
* Never-indexed pool: held-out ungrouped clips and the short ungrouped clips (fillers, picture-in-
  picture backgrounds, negatives) plus the non-reference members of hard-negative groups
  (negatives only). G15's second member (a *partial* copy on another background, no known
  alignment) is used nowhere.
* Positive queries: an edited segment (>= 3 s, random offset) of a reference, wrapped 50 % of the
  time between pieces of never-indexed clips. One edit family per query (see FAMILIES), "combo"
  chains 2-3 edits. Spatial edits apply to the whole query (the uploader edits their whole
  video), picture-in-picture and speed change to the copied segment only, frame-rate change to the
  whole file.
* Negative queries: pieces of never-indexed clips only, edited the same ways.
* Natural copies: the other members of copy groups, copied as they are; their offset in the
  reference is found by aligning 32x32 grey thumbnails (10 fps).

Clips are decoded from the start with vmatch.decode.iter_frames (no seeking: FFmpeg input seeking
into some clips decodes garbage) and trimmed in Python by presentation time; every window is
checked for garbage (green / flat frames) and every written query is decoded back and checked.

Writes OUT/queries/*.mp4, OUT/queries.csv, OUT/ground_truth.csv, OUT/references.txt
(ref_id<TAB>path), OUT/manifest.json. Seeded and reproducible (same seed, same files, same CSVs).

``--part train`` builds a *training part* the same way, to fit methods and thresholds on data kept
apart from the evaluation benchmark: the main roles come from the ``train`` split of clip_split.tsv
(fewer ungrouped clips held out, see PART_SETTINGS), the look-alike families from training clips
and generated seeds >= 950000 (lookalike.py), and its random streams are keyed apart from the
evaluation part's. Same output layout (bench_run.py runs on it unchanged); manifest.json records
the part. ``--part eval`` (the default) is the evaluation benchmark, unchanged.
Edits are implemented here (numpy/torch), independently of vmatch/augment.py (which the model's
whitening was fitted with).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

WORK_FPS = 15
MAX_W, MAX_H = 640, 480
FAMILIES = (
    "lowres_reencode",
    "crop_mild",
    "crop_heavy",
    "hflip",
    "colour",
    "grayscale",
    "blur_noise",
    "caption_logo",
    "border",
    "rotate",
    "vertical_9x16",
    "pip",
    "speed",
    "fps_change",
    "combo",
)
COMBO_PARTS = ("crop_mild", "colour", "caption_logo", "border", "blur_noise", "hflip", "rotate")
EXCLUDED = {"mediabunny_spring_white.mp4"}  # partial copy of G15 with unknown alignment
N_HELDOUT_UNGROUPED = 5
HARD_NEG_REF_MIN_S = 3.5
MAX_HARD_NEG_PER_GROUP = 8
N_EXTRA_NEGATIVES = 14
POSITIVES_PER_REF = 3
#: What differs between the parts: ungrouped clips held out of the references, the shortest
#: reference of a hard-negative group, and the extra key of the main random stream (None: the plain
#: seed, as the evaluation benchmark always had). The train split has 8 ungrouped clips >= 3 s once
#: its look-alike clips are reserved, and G03's longest member is 3.41 s.
PART_SETTINGS = {
    "eval": {"n_heldout": N_HELDOUT_UNGROUPED, "hard_neg_ref_min_s": HARD_NEG_REF_MIN_S, "stream": None},
    "train": {"n_heldout": 3, "hard_neg_ref_min_s": 3.0, "stream": 950_000},
}


def part_rng(seed: int, part: str, *tags: int) -> np.random.Generator:
    """The random stream ``tags`` of ``part``; eval's are the streams it always used."""
    stream = PART_SETTINGS[part]["stream"]
    if stream is None:
        return np.random.default_rng([seed, *tags] if tags else seed)
    return np.random.default_rng([seed, *tags, stream])


# --------------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------------


def load_clips(clips_dir: Path, split_tsv: Path, part: str = "eval") -> list[dict]:
    rows = []
    with open(split_tsv, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["split"] != part:
                continue
            p = clips_dir / r["filename"]
            if not p.exists():
                print(f"warning: {p} missing, skipped", file=sys.stderr)
                continue
            rows.append(
                {"name": r["filename"], "path": p, "group": r["dup_group"], "duration": float(r["duration_s"])}
            )
    return rows


def split_reserved(clips: list[dict], part: str = "eval") -> tuple[list[dict], dict[str, Path]]:
    """The main benchmark's clips, and the clips reserved for the look-alike families (lookalike.py),
    which no other role may use (their other parts are negatives there)."""
    from lookalike import reserved_clips

    reserved = reserved_clips(part)
    main = [c for c in clips if c["name"] not in reserved]
    return main, {c["name"]: c["path"] for c in clips if c["name"] in reserved}


COPY_GROUPS = ("G07", "G08", "G09", "G11", "G14", "G15")


def plan_roles(clips: list[dict], rng: np.random.Generator, n_heldout: int = N_HELDOUT_UNGROUPED,
               hard_neg_ref_min_s: float = HARD_NEG_REF_MIN_S):
    refs, natural, never, hardneg = [], [], [], []
    groups: dict[str, list[dict]] = defaultdict(list)
    ungrouped = []
    for c in clips:
        if c["name"] in EXCLUDED:
            continue
        (groups[c["group"]] if c["group"] else ungrouped).append(c)
    for g, members in sorted(groups.items()):
        members = sorted(members, key=lambda c: (-c["duration"], c["name"]))
        if g[:3] in COPY_GROUPS:
            refs.append(members[0])
            natural += [(m, members[0]) for m in members[1:]]
        else:  # hard-negative group: one reference (>= 3 s, random among the longest), others negatives
            long_enough = [m for m in members if m["duration"] >= hard_neg_ref_min_s]
            top = [m for m in long_enough if m["duration"] >= long_enough[0]["duration"] - 0.01]
            ref = top[int(rng.integers(len(top)))]
            refs.append(ref)
            others = [m for m in members if m is not ref]
            rng.shuffle(others)
            hardneg += others[:MAX_HARD_NEG_PER_GROUP]
    long_ug = sorted([c for c in ungrouped if c["duration"] >= 3.0], key=lambda c: c["name"])
    held = set(int(i) for i in rng.choice(len(long_ug), size=n_heldout, replace=False))
    for i, c in enumerate(long_ug):
        (never if i in held else refs).append(c)
    never += sorted([c for c in ungrouped if c["duration"] < 3.0], key=lambda c: c["name"])
    return refs, natural, never, hardneg


def probe_size(path: Path) -> tuple[int, int]:
    from vmatch.decode import probe

    info = probe(path)
    s = min(1.0, MAX_W / info.width, MAX_H / info.height)
    w = max(16, int(round(info.width * s / 2)) * 2)
    h = max(16, int(round(info.height * s / 2)) * 2)
    return h, w


# --------------------------------------------------------------------------------------------------
# Decoding windows (from the start, trimmed by presentation time)
# --------------------------------------------------------------------------------------------------


def garbage_fraction(frame: np.ndarray) -> float:
    f = frame.astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    # undecoded planes (Y = U = V = 0) convert to a flat dark green near RGB (0, 135, 0)
    green = (r < 24) & (b < 24) & (g > 100) & (g < 170)
    return float(green.mean())


def decode_windows(path: Path, size_hw: tuple[int, int], windows: list[tuple[float, float]]) -> list[np.ndarray]:
    """Frames on screen at t0 + k / WORK_FPS for each window [t0, t1), at size_hw."""
    from vmatch.decode import iter_frames

    t_max = max(b for _, b in windows) + 0.5
    t_min = min(a for a, _ in windows) - 1.0
    times, frames = [], []
    for t, rgb in iter_frames(path, fps=WORK_FPS * 2, size=size_hw):
        if t > t_max:
            break
        if times and t < t_min:
            times[-1], frames[-1] = t, rgb  # keep only the last frame before the windows
            continue
        times.append(t)
        frames.append(rgb)
    if not frames:
        raise RuntimeError(f"{path}: no frames decoded")
    times_a = np.array(times)
    out = []
    for a, b in windows:
        n = max(1, int(round((b - a) * WORK_FPS)))
        grid = a + np.arange(n) / WORK_FPS
        idx = np.clip(np.searchsorted(times_a, grid + 1e-6, side="right") - 1, 0, len(frames) - 1)
        arr = np.stack([frames[i] for i in idx])
        bad = np.mean([garbage_fraction(f) > 0.5 for f in arr[:: max(1, n // 10)]])
        if bad > 0:
            raise RuntimeError(f"{path}: window {a:.2f}-{b:.2f} s decodes green garbage")
        out.append(arr)
    return out


# --------------------------------------------------------------------------------------------------
# Edits (parameters drawn once per query, applied to every frame)
# --------------------------------------------------------------------------------------------------


def resize(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if frames.shape[1:3] == (h, w):
        return frames
    out = []
    for i in range(0, len(frames), 32):
        t = torch.from_numpy(np.ascontiguousarray(frames[i : i + 32])).permute(0, 3, 1, 2).float()
        r = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        out.append(r.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def even(x: float) -> int:
    return max(16, int(round(x / 2)) * 2)


def ed_crop(fr, rng, heavy):
    n, h, w, _ = fr.shape
    area = rng.uniform(0.45, 0.6) if heavy else rng.uniform(0.75, 0.9)
    ar = math.exp(rng.uniform(-0.15, 0.15))
    ch, cw = min(h, int(h * math.sqrt(area / ar))), min(w, int(w * math.sqrt(area * ar)))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return resize(fr[:, y : y + ch, x : x + cw], h, w), {"area": round(area, 3)}


def ed_colour(fr, rng):
    c, b = rng.uniform(0.6, 1.4), rng.uniform(-40, 40)
    sat, gamma = rng.uniform(0.3, 1.6), rng.uniform(0.7, 1.4)
    tint = rng.uniform(0.85, 1.15, size=3)
    out = np.empty_like(fr)
    for i in range(len(fr)):
        f = fr[i].astype(np.float32) * c + b
        g = f.mean(axis=2, keepdims=True)
        f = np.clip((g + (f - g) * sat) * tint, 0, 255)
        out[i] = (255.0 * (f / 255.0) ** gamma).astype(np.uint8)
    return out, {"contrast": round(c, 2), "brightness": round(b, 1), "saturation": round(sat, 2), "gamma": round(gamma, 2)}


def ed_grayscale(fr, rng):
    g = (fr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=3), {}


def ed_blur_noise(fr, rng):
    n, h, w, _ = fr.shape
    s = rng.uniform(0.3, 0.5)
    out = resize(resize(fr, even(h * s), even(w * s)), h, w).astype(np.float32)
    sigma = rng.uniform(6, 14)
    out += rng.normal(0, sigma, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), {"blur_scale": round(s, 2), "noise_sigma": round(sigma, 1)}


WORDS = ("BREAKING NEWS", "WOW!", "FOLLOW ME", "LOL", "MUST SEE", "LIVE 24/7", "REPOST", "HD 1080P")


def ed_caption(fr, rng):
    from vmatch.synth import text_slide

    n, h, w, _ = fr.shape
    out = fr.copy()
    text = WORDS[int(rng.integers(len(WORDS)))]
    bh, bw = max(10, int(h * rng.uniform(0.1, 0.18))), max(20, int(w * rng.uniform(0.5, 0.9)))
    fg = rng.integers(0, 256, 3)
    bg = 255 - fg
    band = text_slide(text, 1, bw, bh, fg=tuple(int(v) for v in fg), bg=tuple(int(v) for v in bg))[0].astype(np.float32)
    y = int(rng.integers(0, h - bh + 1)) if rng.random() < 0.4 else (h - bh - int(h * 0.05))
    x = (w - bw) // 2
    alpha = rng.uniform(0.6, 1.0)
    out[:, y : y + bh, x : x + bw] = (alpha * band + (1 - alpha) * out[:, y : y + bh, x : x + bw]).astype(np.uint8)
    # logo: a coloured disc with a letter, in a corner
    r = max(6, int(min(h, w) * rng.uniform(0.07, 0.12)))
    cy = r + 4 if rng.random() < 0.5 else h - r - 4
    cx = r + 4 if rng.random() < 0.5 else w - r - 4
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    out[:, disc] = rng.integers(0, 256, 3).astype(np.uint8)
    return out, {"text": text, "alpha": round(alpha, 2)}


def ed_border(fr, rng):
    from vmatch.synth import add_border

    n, h, w, _ = fr.shape
    kind = ["letterbox", "pillarbox", "padding"][int(rng.integers(3))]
    f = rng.uniform(0.08, 0.2)
    col = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.5 else (0, 0, 0)
    t = b = l = r = 0
    if kind in ("letterbox", "padding"):
        t = b = int(h * f)
    if kind in ("pillarbox", "padding"):
        l = r = int(w * f)
    return resize(add_border(fr, top=t, bottom=b, left=l, right=r, color=col), h, w), {"kind": kind, "frac": round(f, 2)}


def ed_rotate(fr, rng):
    import torch
    import torch.nn.functional as F

    ang = math.radians(rng.uniform(3, 10) * (1 if rng.random() < 0.5 else -1))
    zoom = 1.0 + abs(math.sin(ang)) * rng.uniform(0.0, 0.8)
    c, s = math.cos(ang) / zoom, math.sin(ang) / zoom
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]], dtype=torch.float32)
    out = []
    for i in range(0, len(fr), 32):
        t = torch.from_numpy(np.ascontiguousarray(fr[i : i + 32])).permute(0, 3, 1, 2).float()
        grid = F.affine_grid(theta.expand(len(t), 2, 3), list(t.shape), align_corners=False)
        o = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out.append(o.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out), {"degrees": round(math.degrees(ang), 1), "zoom": round(zoom, 2)}


def ed_vertical(fr, rng):
    n, h, w, _ = fr.shape
    H, W = 640, 360
    if rng.random() < 0.5 and w / h > 0.8:  # centre strip of 9:16 aspect, scaled to fill
        cw = min(w, int(h * 9 / 16 * rng.uniform(1.0, 1.3)))
        x = int((w - cw) * rng.uniform(0.3, 0.7))
        return resize(fr[:, :, x : x + cw], H, W), {"mode": "strip"}
    ih = even(W * h / w)
    ih = min(ih, H)
    bg = (resize(resize(fr, 16, 9), H, W) // 2).astype(np.uint8)
    y = (H - ih) // 2
    bg[:, y : y + ih] = resize(fr, ih, W)
    return bg, {"mode": "letterbox"}


def ed_hflip(fr, rng):
    return np.ascontiguousarray(fr[:, :, ::-1]), {}


SPATIAL = {
    "crop_mild": lambda f, r: ed_crop(f, r, False),
    "crop_heavy": lambda f, r: ed_crop(f, r, True),
    "hflip": ed_hflip,
    "colour": ed_colour,
    "grayscale": ed_grayscale,
    "blur_noise": ed_blur_noise,
    "caption_logo": ed_caption,
    "border": ed_border,
    "rotate": ed_rotate,
    "vertical_9x16": ed_vertical,
}


def pip_segment(seg: np.ndarray, background: np.ndarray, rng) -> tuple[np.ndarray, dict]:
    n, h, w, _ = seg.shape
    s = rng.uniform(0.45, 0.7)
    ih, iw = even(h * s), even(w * s)
    y, x = int(rng.integers(0, h - ih + 1)), int(rng.integers(0, w - iw + 1))
    out = background.copy()
    out[:, y : y + ih, x : x + iw] = resize(seg, ih, iw)
    return out, {"scale": round(s, 2)}


# --------------------------------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------------------------------


def write_query(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    from vmatch.synth import write_video

    write_video(path, frames, fps=fps, crf=crf, preset="veryfast")


def check_query(path: Path, expect_duration: float) -> dict:
    from vmatch.decode import iter_frames

    n, last, bad, flat = 0, 0.0, 0, 0
    for t, rgb in iter_frames(path, fps=2, size=(64, 64)):
        n += 1
        last = t
        bad += garbage_fraction(rgb) > 0.5
        flat += float(rgb.std()) < 2.0
    if n == 0 or abs(last - expect_duration) > 1.0 or bad:
        raise RuntimeError(f"{path}: check failed (frames {n}, last t {last:.2f}, expected ~{expect_duration:.2f}, garbage {bad})")
    return {"checked_frames": n, "flat_frames": flat}


def align_natural(copy: Path, ref: Path) -> tuple[float, float, float, float]:
    """Where ``copy`` sits in ``ref``, from 32x32 grey thumbnails at 10 fps: (offset in the
    reference, median thumbnail error, end of the copied part in the copy's timeline, copy
    duration). The copy may run past the reference's end (e.g. a frozen last frame): at least half
    of it must overlap; the copied part is the overlap."""
    from vmatch.decode import iter_frames

    def thumbs(p):
        ts, fs = [], []
        for t, rgb in iter_frames(p, fps=10, size=(32, 32)):
            g = rgb.astype(np.float32).mean(axis=2)
            fs.append((g - g.mean()) / (g.std() + 8.0))
            ts.append(t)
        return np.array(ts), np.stack(fs)

    tq, fq = thumbs(copy)
    tr, fr = thumbs(ref)
    step = 0.1
    min_overlap = max(1, (len(fq) + 1) // 2)
    best = (math.inf, 0, len(fq))
    for k in range(0, max(1, len(fr) - min_overlap + 1)):
        m = min(len(fq), len(fr) - k)
        err = float(np.median(np.abs(fq[:m] - fr[k : k + m]).mean(axis=(1, 2))))
        if err < best[0] - 1e-9:
            best = (err, k, m)
    err, k, m = best
    dur = float(tq[-1] + step)
    ref_dur = float(tr[-1] + step)
    off = float(tr[k] - tq[0])
    q_end = min(dur, ref_dur - off) if m < len(fq) else dur
    return off, err, q_end, dur


# --------------------------------------------------------------------------------------------------
# Look-alike families (lookalike.py): references, their siblings as negatives, one copy each
# --------------------------------------------------------------------------------------------------

LA_POSITIVE_EDITS = ("crop_mild", "crop_heavy", "hflip", "colour", "grayscale", "blur_noise", "caption_logo",
                     "border", "rotate", "vertical_9x16", "lowres_reencode")
LA_FLAT_STD = 8.0  # a member whose frames are this flat (e.g. a cell of plain sky) is left out


def lookalike_queries(out: Path, reserved: dict[str, Path], seed: int, first_qi: int, part: str = "eval"):
    """Write the look-alike references (OUT/refs/) and queries; return (references [(id, path)],
    query rows, ground-truth rows, manifest info)."""
    import lookalike as la

    def window(path: Path, w: tuple[float, float]) -> np.ndarray:
        return decode_windows(path, probe_size(path), [w])[0]

    assert la.FPS == WORK_FPS
    members = la.plan(seed, reserved, window, part)
    rng = part_rng(seed, part, 1414)
    (out / "refs").mkdir(exist_ok=True)
    refs, qrows, gtrows, skipped = [], [], [], []
    qi = first_qi
    for m in members:
        frames = m.frames()
        if float(frames[:: max(1, len(frames) // 8)].std(axis=(1, 2, 3)).mean()) < LA_FLAT_STD:
            skipped.append(m.name)
            continue
        qrng = np.random.default_rng(int(rng.integers(2**31)))
        if m.role == "reference":
            path = out / "refs" / f"{m.name}.mp4"
            write_query(path, frames, WORK_FPS, 18)
            check_query(path, len(frames) / WORK_FPS - 1.0 / WORK_FPS)
            refs.append((m.name, path.resolve()))
            # one edited copy of a window of it
            L = float(qrng.uniform(4.0, 8.0))
            n = int(round(L * WORK_FPS))
            s0 = int(qrng.integers(0, len(frames) - n + 1))
            seg, kind, crf = frames[s0 : s0 + n], "positive", 23
            fam = LA_POSITIVE_EDITS[int(qrng.integers(len(LA_POSITIVE_EDITS)))]
        else:
            seg, kind, crf = frames, "negative", 23
            fam = "plain" if qrng.random() < 0.5 else list(SPATIAL)[int(qrng.integers(len(SPATIAL)))]
        edits: dict = {}
        if fam in SPATIAL:
            seg, edits[fam] = SPATIAL[fam](seg, qrng)
        elif fam == "lowres_reencode":
            h, w = seg.shape[1:3]
            tw = int(qrng.integers(128, 241))
            seg = resize(seg, even(h * tw / w), even(tw))
            crf = int(qrng.integers(36, 43))
            edits["lowres"] = {"width": even(tw), "crf": crf}
        if seg.shape[1] % 2 or seg.shape[2] % 2:
            seg = resize(seg, even(seg.shape[1]), even(seg.shape[2]))
        qid = f"q{qi:03d}"
        qi += 1
        qpath = out / "queries" / f"{qid}.mp4"
        write_query(qpath, seg, WORK_FPS, crf)
        duration = len(seg) / WORK_FPS
        chk = check_query(qpath, duration - 1.0 / WORK_FPS)
        qrows.append({
            "query_id": qid, "path": str(qpath.resolve()), "kind": kind, "family": fam,
            "duration": round(duration, 3), "reference_id": m.name if kind == "positive" else "",
            "sources": m.source or f"generated:{m.group}", "edits": json.dumps(edits, sort_keys=True),
            "flat_frames": chk["flat_frames"], "lookalike": m.family,
        })
        if kind == "positive":
            gtrows.append({
                "query_id": qid, "reference_id": m.name, "family": fam,
                "query_start": 0.0, "query_end": round(duration, 3),
                "reference_start": round(s0 / WORK_FPS, 3), "reference_end": round((s0 + n) / WORK_FPS, 3),
            })
    info = {
        "families": sorted({m.family for m in members}), "references": [r for r, _ in refs],
        "negatives": sum(r["kind"] == "negative" for r in qrows), "positives": sum(r["kind"] == "positive" for r in qrows),
        "left_out_flat": skipped, "reserved_clips": sorted(reserved),
    }
    print(f"look-alike families: {len(refs)} references, {info['negatives']} sibling negatives, "
          f"{info['positives']} copies; left out as flat: {skipped}")
    return refs, qrows, gtrows, info


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="../shared/clips")
    ap.add_argument("--split", default=str(Path(__file__).resolve().parent / "clip_split.tsv"))
    ap.add_argument("--out", default="benchmarks/work/bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", choices=sorted(PART_SETTINGS), default="eval",
                    help="eval: the evaluation benchmark (default); train: the training part, from the train split")
    args = ap.parse_args(argv)
    settings = PART_SETTINGS[args.part]

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t_start = time.monotonic()
    rng = part_rng(args.seed, args.part)
    clips_dir = Path(args.clips).resolve()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "queries").mkdir(parents=True)

    clips, reserved = split_reserved(load_clips(clips_dir, Path(args.split), args.part), args.part)
    refs, natural, never, hardneg = plan_roles(clips, rng, settings["n_heldout"], settings["hard_neg_ref_min_s"])
    filler_pool = never  # ungrouped never-indexed clips
    print(f"{args.part} clips {len(clips)}: references {len(refs)}, natural copies {len(natural)}, "
          f"never-indexed {len(never)}, hard-negative clips {len(hardneg)}")
    sizes = {}
    for c in refs + never + hardneg:
        sizes[c["name"]] = probe_size(c["path"])

    # ---- plan every query: list of pieces (clip, t0, t1) + edit --------------------------------
    plans = []
    fam_cycle = list(FAMILIES) * (1 + (len(refs) * POSITIVES_PER_REF) // len(FAMILIES))
    fam_cycle = fam_cycle[: len(refs) * POSITIVES_PER_REF]
    rng.shuffle(fam_cycle)

    def filler_piece(max_len):
        c = filler_pool[int(rng.integers(len(filler_pool)))]
        L = min(float(rng.uniform(2.0, max_len)), c["duration"] - 0.15)
        t0 = math.floor(float(rng.uniform(0, c["duration"] - L)) * WORK_FPS) / WORK_FPS
        return (c, t0, t0 + L)

    qi = 0
    for ri, ref in enumerate(refs):
        for j in range(POSITIVES_PER_REF):
            fam = fam_cycle[ri * POSITIVES_PER_REF + j]
            speed = 1.0
            if fam == "speed" or (fam == "combo" and rng.random() < 0.3):
                speed = float(rng.choice([rng.uniform(0.8, 0.93), rng.uniform(1.07, 1.25)]))
            max_len = min(10.0, ref["duration"] - 0.2)
            L = float(rng.uniform(3.0, max(3.0, max_len)))
            L = min(L, ref["duration"] - 0.1)
            t0 = math.floor(float(rng.uniform(0, ref["duration"] - L)) * WORK_FPS) / WORK_FPS
            wrap = rng.random() < 0.5
            plan = {
                "query_id": f"q{qi:03d}", "kind": "positive", "family": fam, "ref": ref,
                "seg": (ref, t0, t0 + L), "speed": speed, "wrap": wrap,
                "pre": filler_piece(6.0) if wrap else None, "post": filler_piece(6.0) if wrap else None,
                "pip_bg": filler_piece(12.0) if fam == "pip" else None,
                "seed": int(rng.integers(2**31)),
            }
            plans.append(plan)
            qi += 1
    neg_sources = [[c] for c in hardneg]
    lookalike_of = {id(c): c["group"] for c in hardneg}  # same source / place as one reference
    for _ in range(N_EXTRA_NEGATIVES):
        k = int(rng.integers(1, 3))
        neg_sources.append([filler_pool[int(i)] for i in rng.choice(len(filler_pool), size=k, replace=False)])
    neg_fams = [f for f in FAMILIES if f not in ("speed", "pip")]
    for srcs in neg_sources:
        pieces = []
        for c in srcs:
            L = min(float(rng.uniform(3.0, 10.0)), c["duration"] - 0.1)
            t0 = math.floor(float(rng.uniform(0, c["duration"] - L)) * WORK_FPS) / WORK_FPS
            pieces.append((c, t0, t0 + L))
        plans.append({
            "query_id": f"q{qi:03d}", "kind": "negative", "family": neg_fams[int(rng.integers(len(neg_fams)))],
            "ref": None, "pieces": pieces, "seed": int(rng.integers(2**31)), "speed": 1.0,
            "lookalike": lookalike_of.get(id(srcs[0]), "") if len(srcs) == 1 else "",
        })
        qi += 1

    # ---- decode every needed window, one pass per clip ----------------------------------------
    need: dict[str, list] = defaultdict(list)  # clip name -> [(plan index, slot, t0, t1)]
    for pi, p in enumerate(plans):
        if p["kind"] == "positive":
            c, a, b = p["seg"]
            need[c["name"]].append((pi, "seg", a, b))
            for slot in ("pre", "post", "pip_bg"):
                if p.get(slot):
                    c2, a2, b2 = p[slot]
                    need[c2["name"]].append((pi, slot, a2, b2))
        else:
            for k, (c, a, b) in enumerate(p["pieces"]):
                need[c["name"]].append((pi, f"piece{k}", a, b))
    by_name = {c["name"]: c for c in clips}
    windows: dict[tuple, np.ndarray] = {}
    t_dec = time.monotonic()
    for name, reqs in sorted(need.items()):
        arrs = decode_windows(by_name[name]["path"], sizes[name], [(a, b) for _, _, a, b in reqs])
        for (pi, slot, _, _), arr in zip(reqs, arrs):
            windows[(pi, slot)] = arr
    print(f"decoded windows from {len(need)} clips in {time.monotonic() - t_dec:.1f} s")

    # ---- build, edit, write, check -------------------------------------------------------------
    qrows, gtrows = [], []
    fam_apply_counts = defaultdict(int)
    for pi, p in enumerate(plans):
        qrng = np.random.default_rng(p["seed"])
        qid = p["query_id"]
        fam = p["family"]
        edits: dict = {}
        fps_out = float(WORK_FPS)
        crf = 23
        if p["kind"] == "positive":
            ref = p["ref"]
            H, W = sizes[ref["name"]]
            seg = windows[(pi, "seg")]
            if p["speed"] != 1.0:
                from vmatch.synth import speed_change

                seg = speed_change(seg, WORK_FPS, p["speed"])
                edits["speed"] = round(p["speed"], 3)
            if fam == "pip":
                bg = resize(windows[(pi, "pip_bg")], H, W)
                reps = int(math.ceil(len(seg) / len(bg)))
                bg = np.concatenate([bg] * reps)[: len(seg)]
                seg, e = pip_segment(seg, bg, qrng)
                edits["pip"] = e
            parts = []
            pre = resize(windows[(pi, "pre")], H, W) if p["wrap"] else None
            post = resize(windows[(pi, "post")], H, W) if p["wrap"] else None
            if pre is not None:
                parts.append(pre)
            parts.append(seg)
            if post is not None:
                parts.append(post)
            frames = np.concatenate(parts)
            q_start = (len(pre) if pre is not None else 0) / WORK_FPS
            q_end = q_start + len(seg) / WORK_FPS
            _, r0, r1 = p["seg"]
            sources = [p["seg"]] + [p[s] for s in ("pre", "post", "pip_bg") if p.get(s)]
        else:
            first = p["pieces"][0][0]
            H, W = sizes[first["name"]]
            frames = np.concatenate([resize(windows[(pi, f"piece{k}")], H, W) for k in range(len(p["pieces"]))])
            sources = p["pieces"]
        # spatial / encoding / frame-rate edits on the whole query
        steps = []
        if fam in SPATIAL:
            steps = [fam]
        elif fam == "combo":
            steps = list(qrng.choice(COMBO_PARTS, size=int(qrng.integers(2, 4)), replace=False))
            edits["combo"] = steps
        for s in steps:
            frames, e = SPATIAL[s](frames, qrng)
            edits[s] = e
            fam_apply_counts[s] += 1
        if fam == "lowres_reencode" or (fam == "combo" and qrng.random() < 0.4):
            h, w = frames.shape[1:3]
            tw = int(qrng.integers(128, 241))
            frames = resize(frames, even(h * tw / w), even(tw))
            crf = int(qrng.integers(36, 43))
            edits["lowres"] = {"width": even(tw), "crf": crf}
        if fam == "fps_change":
            from vmatch.synth import fps_change

            fps_out = float(qrng.choice([8.0, 10.0, 24.0, 30.0]))
            frames = fps_change(frames, WORK_FPS, fps_out)
            edits["fps"] = fps_out
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            frames = resize(frames, even(frames.shape[1]), even(frames.shape[2]))
        qpath = out / "queries" / f"{qid}.mp4"
        write_query(qpath, frames, fps_out, crf)
        duration = len(frames) / fps_out
        chk = check_query(qpath, duration - 1.0 / fps_out)
        qrows.append({
            "query_id": qid, "path": str(qpath.resolve()), "kind": p["kind"], "family": fam,
            "duration": round(duration, 3), "reference_id": Path(p["ref"]["name"]).stem if p["ref"] else "",
            "sources": ";".join(f"{c['name']}@{a:.2f}-{b:.2f}" for c, a, b in sources),
            "edits": json.dumps(edits, sort_keys=True), "flat_frames": chk["flat_frames"],
            "lookalike": p.get("lookalike", ""),
        })
        if p["kind"] == "positive":
            gtrows.append({
                "query_id": qid, "reference_id": Path(p["ref"]["name"]).stem, "family": fam,
                "query_start": round(q_start, 3), "query_end": round(q_end, 3),
                "reference_start": round(r0, 3), "reference_end": round(r1, 3),
            })

    # ---- natural copies ------------------------------------------------------------------------
    for copy, ref in natural:
        qid = f"q{qi:03d}"
        qi += 1
        off, err, q_end, dur = align_natural(copy["path"], ref["path"])
        dst = out / "queries" / f"{qid}{copy['path'].suffix}"
        shutil.copyfile(copy["path"], dst)
        qrows.append({
            "query_id": qid, "path": str(dst.resolve()), "kind": "positive", "family": "natural",
            "duration": round(dur, 3), "reference_id": Path(ref["name"]).stem,
            "sources": f"{copy['name']}", "edits": json.dumps({"natural_copy_of": ref["name"], "align_error": round(err, 3)}),
            "flat_frames": 0, "lookalike": "",
        })
        gtrows.append({
            "query_id": qid, "reference_id": Path(ref["name"]).stem, "family": "natural",
            "query_start": 0.0, "query_end": round(q_end, 3),
            "reference_start": round(off, 3), "reference_end": round(off + q_end, 3),
        })
        print(f"natural copy {copy['name']} [0, {q_end:.2f}] -> {ref['name']} at {off:.2f} s (thumbnail error {err:.3f})")

    # ---- look-alike families (issue 14) ---------------------------------------------------------
    la_refs, la_q, la_gt, la_info = lookalike_queries(out, reserved, args.seed, qi, args.part)
    refs_out = [(Path(c["name"]).stem, c["path"]) for c in refs] + la_refs
    qrows += la_q
    gtrows += la_gt
    qi += len(la_q)

    with open(out / "queries.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(qrows[0]))
        w.writeheader()
        w.writerows(qrows)
    with open(out / "ground_truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(gtrows[0]))
        w.writeheader()
        w.writerows(gtrows)
    with open(out / "references.txt", "w") as f:
        for rid, path in refs_out:
            f.write(f"{rid}\t{path}\n")
    n_pos = sum(r["kind"] == "positive" for r in qrows)
    manifest = {
        "part": args.part, "seed": args.seed, "work_fps": WORK_FPS, "max_size": [MAX_W, MAX_H],
        "references": [c["name"] for c in refs] + [rid for rid, _ in la_refs],
        "never_indexed": [c["name"] for c in never], "lookalike": la_info,
        "hard_negative_clips": [c["name"] for c in hardneg],
        "natural_copies": {c["name"]: r["name"] for c, r in natural}, "excluded": sorted(EXCLUDED),
        "queries": len(qrows), "positives": n_pos, "negatives": len(qrows) - n_pos,
        "generation_seconds": round(time.monotonic() - t_start, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    fams = defaultdict(int)
    for r in qrows:
        fams[(r["kind"], r["family"])] += 1
    print(f"{len(qrows)} queries ({n_pos} positive, {len(qrows) - n_pos} negative), {len(refs)} references, "
          f"in {manifest['generation_seconds']} s -> {out}")
    print("  " + ", ".join(f"{k[0][:3]}:{k[1]}={v}" for k, v in sorted(fams.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
