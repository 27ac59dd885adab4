#!/usr/bin/env python3
"""Indexing time and peak memory against video length (issue 7): linear time, bounded memory.

    python benchmarks/length_scaling.py [--minutes 1,4,16] [--results benchmarks/RESULTS.md]

Generates one synthetic H.264 video per length (320x240, 25 fps, x264 ultrafast; a new scene
every few seconds so that no frame is blank), then indexes each in a fresh process
(``vmatch index --bank B FILE``, default settings) and reads the process's peak RSS
(``ru_maxrss`` of the child) and the summary's time. The model's own memory is the same for
every length; what grows with the length is what a run keeps (1 KB of features per sampled frame).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from machine import machine, replace_section  # noqa: E402

BEGIN, END = "<!-- length:begin -->", "<!-- length:end -->"


def make_video(path: Path, minutes: float) -> Path:
    if path.exists():
        return path
    import numpy as np

    from vmatch import synth

    fps, seconds = 25, int(minutes * 60)

    def frames():
        for s in range(0, seconds, 5):  # a new synthetic scene every 5 s
            yield from synth.scene_frames(9000 + s, width=320, height=240, n_frames=5 * fps, fps=float(fps))

    tmp = path.with_suffix(".tmp.mp4")
    synth.write_video(tmp, (np.asarray(f) for f in frames()), fps=fps, codec="libx264", preset="ultrafast", crf=28)
    os.replace(tmp, path)
    return path


def index_child(video: Path, bank: Path) -> dict:
    if bank.exists():
        shutil.rmtree(bank)
    t = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-m", "vmatch.cli", "index", "--bank", str(bank), str(video)],
                         capture_output=True, text=True)
    wall = time.monotonic() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over children so far
    if out.returncode != 0:
        raise SystemExit(f"index failed: {out.stderr}")
    m = re.search(r"indexed 1 video\(s\): (\d+) frames, ([\d.]+) s of video in ([\d.]+) s", out.stderr)
    if not m:
        raise SystemExit(f"no summary line in: {out.stderr}")
    return {"frames": int(m.group(1)), "video_s": float(m.group(2)), "index_s": float(m.group(3)),
            "wall_s": wall, "peak_rss_mb": peak / 1024, "peak_grew": peak > before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="1,4,16")
    ap.add_argument("--out", default=str(HERE / "work" / "length"))
    ap.add_argument("--results", default=None)
    args = ap.parse_args(argv)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    mach = machine()
    rows = []
    for m in sorted(float(x) for x in args.minutes.split(",")):  # shortest first: ru_maxrss is a running max
        video = make_video(work / f"synthetic_{m:g}min.mp4", m)
        r = index_child(video, work / "bank")
        r["minutes"] = m
        rows.append(r)
        print(json.dumps(r), flush=True)
    L = [f"Machine: {mach}. Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
         "| video | sampled frames | indexing (summary) | × real time | s per 1,000 frames | whole command wall | peak RSS of the command |",
         "|---|---|---|---|---|---|---|"]
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_grew"] or r is rows[0] else f"≤ {r['peak_rss_mb']:.0f} MB (no new peak)"
        L.append(f"| {r['minutes']:g} min, 320x240 H.264 | {r['frames']} | {r['index_s']:.1f} s | "
                 f"{r['video_s'] / r['index_s']:.1f} | {1000 * r['index_s'] / r['frames']:.1f} | {r['wall_s']:.1f} s | {rss} |")
    md = "\n".join(L) + "\n"
    (work / "length.md").write_text(md)
    if args.results:
        replace_section(Path(args.results), BEGIN, END, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
