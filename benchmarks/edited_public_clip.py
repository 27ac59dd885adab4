"""One edited public clip, found with its segment — and indexing speed on 720p H.264.

Reproducible check on real footage (``../shared/clips``, evaluation split only):

1. index a set of evaluation clips as references (timed: × real time of ``index_videos``);
2. build a query: seconds [A, B] of one reference, cropped to 80 %, brightened, with a caption
   banner, played 1.25× faster and re-timed to 30 fps, inserted between pieces of two clips that
   are *not* indexed; plus a negative query made only of non-indexed clips;
3. match both and print the report beside the planted truth.

Run: ``python benchmarks/edited_public_clip.py`` (about a minute on 2 CPU cores). Prints a
Markdown block with the machine, the figures and the found segment.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

from vmatch.bank import Bank  # noqa: E402
from vmatch.decode import iter_frames, probe  # noqa: E402
from vmatch.embed import tune_cpu_allocator  # noqa: E402
from vmatch.pipeline import index_videos  # noqa: E402
from vmatch.synth import concat, crop, resize, speed_change, write_video  # noqa: E402

REFERENCES = [
    "sam2_01_dog.mp4",
    "sam2_02_cups.mp4",
    "sam2_03_blocks.mp4",
    "sam2_04_coffee.mp4",
    "openh264_flower_1280x720.mp4",
    "intel_bottle-detection.mp4",
    "intel_car-detection.mp4",
    "mdn_tears_of_steel_battle.webm",
]
SOURCE, SRC_START, SRC_END = "mdn_tears_of_steel_battle.webm", 20.0, 32.0
FILLERS = ["p5_fingers.mov", "mdn_stream_of_water.webm"]  # evaluation clips, not indexed
NEGATIVE = ["sleap_small_robot.mp4", "mdn_flower.webm"]


def frames_of(path: Path, start: float = 0.0, end: float = 1e9, size=(360, 640)) -> tuple[np.ndarray, float]:
    """Every frame in [start, end) at ``size``, and the clip's average frame rate."""
    info = probe(path)
    fps = info.fps or 25.0
    out = [f for t, f in iter_frames(path, fps=240.0, size=size) if start <= t < end]
    return np.stack(out), fps


def caption(frames: np.ndarray) -> np.ndarray:
    out = frames.copy()
    h, w = out.shape[1:3]
    y0, y1 = int(h * 0.78), int(h * 0.92)
    out[:, y0:y1, int(w * 0.1) : int(w * 0.9)] = (0.35 * out[:, y0:y1, int(w * 0.1) : int(w * 0.9)] + 160).astype(np.uint8)
    for x in range(int(w * 0.12), int(w * 0.88), 18):  # "letters"
        out[:, y0 + 6 : y1 - 6, x : x + 6] = 20
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "clips")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    tune_cpu_allocator()
    work = Path(tempfile.mkdtemp(prefix="vmatch-bench-"))
    refs = [args.clips / n for n in REFERENCES]

    # 1. index (timed)
    bank = Bank.open(work / "bank", create=True, device=args.device)
    bank.embedder()  # build the CNN before timing
    t0 = time.perf_counter()
    summary = index_videos(bank, refs)
    t_index = time.perf_counter() - t0
    flower = [r for r in refs if r.name == "openh264_flower_1280x720.mp4"]
    sam = [r for r in refs if r.name.startswith("sam2_")]
    speed = {}
    for name, files in (("720p H.264 openh264_flower (9.9 s)", flower), ("720p H.264 sam2_01..04 (39 s)", sam)):
        b = Bank.open(work / f"bank-{len(speed)}", create=True, device=args.device)
        b.set_embedder(bank.embedder())
        t = time.perf_counter()
        s = index_videos(b, files)
        el = time.perf_counter() - t
        speed[name] = (s.seconds, el, s.seconds / el)
        b.close()

    # 2. query: edited segment between two non-indexed clips; and a negative query
    seg, fps = frames_of(args.clips / SOURCE, SRC_START, SRC_END)
    h, w = seg.shape[1:3]
    ch, cw = int(h * 0.8) // 2 * 2, int(w * 0.8) // 2 * 2
    edited = resize(crop(seg, top=(h - ch) // 2, left=(w - cw) // 2, height=ch, width=cw), height=h, width=w)
    edited = np.clip(edited.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    edited = caption(edited)
    edited = speed_change(edited, 30.0, 1.25 * fps / 30.0)  # 1.25x faster, re-timed to 30 fps
    pre, _ = frames_of(args.clips / FILLERS[0], 0.0, 5.0)
    post, _ = frames_of(args.clips / FILLERS[1], 0.0, 3.0)
    pre = pre[:: max(1, round(len(pre) / (5.0 * 30)))][:150]
    post = post[:: max(1, round(len(post) / (3.0 * 30)))][:90]
    query = work / "query_edited.mp4"
    write_video(query, concat(pre, edited, post), fps=30, crf=26)
    q_start = len(pre) / 30.0
    q_end = q_start + len(edited) / 30.0
    neg_a, _ = frames_of(args.clips / NEGATIVE[0], 0.0, 5.0)
    neg_b, _ = frames_of(args.clips / NEGATIVE[1], 0.0, 5.0)
    negative = work / "query_negative.mp4"
    write_video(negative, concat(neg_a[:150], neg_b[:150]), fps=30, crf=26)

    t = time.perf_counter()
    rep = bank.match(query)
    t_match = time.perf_counter() - t
    rep_neg = bank.match(negative)
    bank.close()

    print("### Edited public clip and indexing speed")
    print(f"- machine: {machine()}; device: {args.device}; torch threads: default")
    print("- command: `python benchmarks/edited_public_clip.py`")
    print(f"- indexed {summary.videos} evaluation clips ({summary.seconds:.1f} s of video, {summary.frames} frames) "
          f"in {t_index:.1f} s = {summary.seconds / t_index:.1f}x real time at 1 frame/s")
    for k, (sec, el, x) in speed.items():
        print(f"- indexing {k}: {el:.2f} s = **{x:.1f}x real time** (decode + CNN + bank write)")
    print(f"- planted: `{SOURCE}` {SRC_START:.1f}-{SRC_END:.1f} s, crop 80 % + brightness +30 + caption banner "
          f"+ 1.25x speed + {fps:.0f}->30 fps, at query {q_start:.2f}-{q_end:.2f} s between two non-indexed clips")
    print(f"- match took {t_match:.2f} s; report:")
    print("```json")
    print(json.dumps(rep.to_dict()))
    print(json.dumps(rep_neg.to_dict()))
    print("```")
    ok = bool(rep.matches) and rep.matches[0].reference == Path(SOURCE).stem
    if ok:
        s = rep.matches[0].segments[0]
        print(f"- found: query {s.query_start:.1f}-{s.query_end:.1f} s (planted {q_start:.2f}-{q_end:.2f}), "
              f"reference {s.reference_start:.1f}-{s.reference_end:.1f} s (planted {SRC_START:.1f}-{SRC_END:.1f}), "
              f"score {rep.matches[0].score:.3f} vs threshold {rep.threshold}")
    print(f"- negative query: {len(rep_neg.matches)} match(es) at the default threshold")
    return 0 if ok and not rep_neg.matches else 1


if __name__ == "__main__":
    sys.exit(main())
