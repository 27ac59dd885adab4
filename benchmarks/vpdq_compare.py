"""vPDQ in vmatch (vmatch.signals.vpdq.hash_video) vs Meta's reference (the ``vpdq`` package).

Two parts, both measured in the same run on the same machine (named in the output):

1. Fidelity, on every clip of ``--clips`` (default /work/shared/clips) or only the ``eval`` rows of
   ``benchmarks/clip_split.tsv`` (``--split eval``). For each clip the reference
   ``vpdq.computeHash(path, seconds_per_hash=1)`` is compared with

   * ``hash_video(path)`` (default ``sampling="vpdq"``: the reference's frames, every
     ``int(fps)``-th decoded frame), paired by frame number: share of the reference's frames of
     quality >= 50 whose hash is within 8 bits of ours (target >= 95 %), share identical, quality
     equality, and the vPDQ match of our hash against the reference's hash of the same file;
   * ``hash_video(path, sampling="time")`` (one frame a second of presentation time, display
     orientation): each reference frame of quality >= 50 paired with our frame of nearest
     timestamp, share within 8 bits; and the vPDQ match of that hash against the reference's hash
     of the same file (query = ours), which is what interoperability needs (>= 80 % is a match).

2. Speed at 1 hash/s (decoding included) on ``openh264_flower_1280x720.mp4`` and the
   ``sam2_0*.mp4`` clips (720p H.264): ``vpdq.computeHash`` vs ``hash_video`` (default
   ``sampling="vpdq"``, ``sampling="time"``, and ``sampling="time", skip_nonref=True``), median of
   ``--repeat`` runs, as seconds of video hashed per second of wall time ("x real time").

Run: ``python benchmarks/vpdq_compare.py [--split eval] [--device cpu] [--repeat 3]`` (needs
``pip install vpdq``, which builds against the system FFmpeg: ``apt-get install libavcodec-dev
libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavdevice-dev libavfilter-dev
pkg-config`` first).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

from vmatch.decode import find_videos, probe  # noqa: E402
from vmatch.errors import DecodeError  # noqa: E402
from vmatch.signals.pdq import hamming, pdq_hash_batch  # noqa: E402
from vmatch.signals.vpdq import VPDQFrame, hash_video, match_vpdq  # noqa: E402

SPEED_CLIPS = ("openh264_flower_1280x720.mp4", "sam2_0*.mp4")
CLOSE_BITS = 8
QUALITY = 50


def select_clips(clips: Path, split: str) -> list[Path]:
    videos, problems = find_videos([clips])
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if split == "all":
        return videos
    names: set[str] = set()
    with open(ROOT / "benchmarks" / "clip_split.tsv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["split"] == split:
                names.add(row["filename"])
    return [v for v in videos if v.name in names]


def as_frames(ref: list) -> list[VPDQFrame]:  # type: ignore[type-arg]
    return [VPDQFrame(f.frame_number, f.hex, f.quality, max(0.0, f.timestamp)) for f in ref]


def fidelity(paths: list[Path], device: str) -> None:
    import vpdq

    print(f"\n## Fidelity: {len(paths)} clips, 1 hash/s, frames of reference quality >= {QUALITY}\n")
    print(
        "| clip | ref frames | q>=50 | default: frames paired | <=8 bits | identical | same quality "
        "| match % | time: frames | <=8 bits (nearest time) | match % (time vs ref) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tot = dict(n=0, close=0, ident=0, qual=0, nq=0, dn=0, dclose=0)
    low_match: list[str] = []
    low_exact: list[str] = []
    failed: list[str] = []
    for path in paths:
        try:
            ref = vpdq.computeHash(str(path), seconds_per_hash=1.0)
        except Exception as exc:  # noqa: BLE001 - the reference raises a bare Exception
            failed.append(f"{path.name}: vpdq failed ({exc})")
            continue
        try:
            exact = hash_video(path, device=device)
            default = hash_video(path, sampling="time", device=device)
        except DecodeError as exc:
            failed.append(f"{path.name}: vmatch failed ({exc})")
            continue
        by_number = {f.frame_number: f for f in exact}
        good = [f for f in ref if f.quality >= QUALITY]
        pairs = [(f, by_number[f.frame_number]) for f in good if f.frame_number in by_number]
        d = np.array([hamming(a.hex, b.hex) for a, b in pairs], dtype=int)
        same_q = sum(a.quality == by_number[a.frame_number].quality for a in ref if a.frame_number in by_number)
        times = np.array([f.timestamp for f in default])
        dd = []
        for f in good:
            j = int(np.argmin(np.abs(times - f.timestamp))) if len(times) else -1
            if j >= 0:
                dd.append(hamming(f.hex, default[j].hex))
        dd_arr = np.array(dd, dtype=int)
        m = match_vpdq(default, as_frames(ref))
        pct = f"{m.query_match_percent:.0f} / {m.compared_match_percent:.0f}" if m.n_query else "n/a"
        if m.n_query and m.query_match_percent < 80:
            low_match.append(f"{path.name} ({m.query_match_percent:.0f} %)")
        me = match_vpdq(exact, as_frames(ref))
        pct_e = f"{me.query_match_percent:.0f} / {me.compared_match_percent:.0f}" if me.n_query else "n/a"
        if me.n_query and me.query_match_percent < 80:
            low_exact.append(f"{path.name} ({me.query_match_percent:.0f} %)")
        print(
            f"| {path.name} | {len(ref)} | {len(good)} | {len(pairs)}/{len(good)} "
            f"| {(d <= CLOSE_BITS).mean() if len(d) else float('nan'):.0%} "
            f"| {(d == 0).mean() if len(d) else float('nan'):.0%} | {same_q}/{len(ref)} | {pct_e} "
            f"| {len(default)} | {(dd_arr <= CLOSE_BITS).mean() if len(dd_arr) else float('nan'):.0%} | {pct} |"
        )
        tot["n"] += len(pairs)
        tot["close"] += int((d <= CLOSE_BITS).sum())
        tot["ident"] += int((d == 0).sum())
        tot["nq"] += len(good)
        tot["dn"] += len(dd_arr)
        tot["dclose"] += int((dd_arr <= CLOSE_BITS).sum())
        sys.stdout.flush()
    print()
    if tot["n"]:
        print(
            f"default (sampling='vpdq'): {tot['close']}/{tot['n']} = {tot['close'] / tot['n']:.2%} of the reference's "
            f"quality>={QUALITY} frames within {CLOSE_BITS} bits (target >= 95 %), "
            f"{tot['ident'] / tot['n']:.2%} identical; {tot['n']}/{tot['nq']} reference frames paired by number"
        )
    if tot["dn"]:
        print(
            f"sampling='time': {tot['dclose']}/{tot['dn']} = {tot['dclose'] / tot['dn']:.2%} within "
            f"{CLOSE_BITS} bits of the reference frame nearest in time"
        )
    print(f"default hash vs the reference's hash of the same file below 80 % query match: {low_exact or 'none'}")
    print(f"sampling='time' hash vs the reference's hash of the same file below 80 %: {low_match or 'none'}")
    for line in failed:
        print(f"FAILED {line}")


def timed_interleaved(fns: list, repeat: int) -> list[float]:  # type: ignore[type-arg]
    """Median wall time of each function, the functions run in turn ``repeat`` times (so that a
    change of machine load affects them alike)."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            runs[i].append(time.perf_counter() - t0)
    return [statistics.median(r) for r in runs]


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def speed(clips: Path, device: str, repeat: int) -> None:
    import vpdq

    paths: list[Path] = []
    for pattern in SPEED_CLIPS:
        paths += sorted(clips.glob(pattern))
    print(
        f"\n## Speed at 1 hash/s, decoding included, median of {repeat} interleaved runs "
        f"(x real time = video s / wall s); load average before: {load()}\n"
    )
    print(
        "| clip | size | fps | duration s | vpdq.computeHash | ours default (sampling=vpdq) "
        "| ours sampling=time | ours sampling=time, skip_nonref |"
    )
    print("|---|---|---|---|---|---|---|---|")
    totals = np.zeros(4)
    total_dur = 0.0
    for path in paths:
        info = probe(path)
        runs = timed_interleaved(
            [
                lambda: vpdq.computeHash(str(path), seconds_per_hash=1.0),
                lambda: hash_video(path, device=device),
                lambda: hash_video(path, device=device, sampling="time"),
                lambda: hash_video(path, device=device, sampling="time", skip_nonref=True),
            ],
            repeat,
        )
        totals += runs
        total_dur += info.duration
        cells = " | ".join(f"{info.duration / r:.1f}x ({r:.2f} s)" for r in runs)
        print(f"| {path.name} | {info.width}x{info.height} | {info.fps:.2f} | {info.duration:.2f} | {cells} |")
        sys.stdout.flush()
    if total_dur:
        cells = " | ".join(f"{total_dur / r:.1f}x ({r:.2f} s)" for r in totals)
        print(f"| all | | | {total_dur:.2f} | {cells} |")
    print(f"\nload average after: {load()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="/work/shared/clips", help="directory of videos")
    parser.add_argument("--split", default="all", choices=["all", "eval", "train"], help="clips to compare")
    parser.add_argument("--device", default="cpu", help="device for vmatch's PDQ: cpu, cuda, auto")
    parser.add_argument("--repeat", type=int, default=3, help="runs per speed measurement")
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    try:
        import vpdq
    except ImportError:
        print("vpdq is not installed: pip install vpdq (see the docstring for its system packages)", file=sys.stderr)
        return 2
    clips = Path(args.clips)
    print(f"# vPDQ: vmatch vs vpdq {getattr(vpdq, '__version__', '')}".rstrip())
    print(f"machine: {machine()}; device for vmatch's PDQ: {args.device}")
    try:
        import av

        print(f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec)")
    except Exception:  # noqa: BLE001 - informational only
        pass
    pdq_hash_batch(np.zeros((2, 96, 128, 3), np.uint8), device=args.device)  # warm-up
    if not args.skip_fidelity:
        fidelity(select_clips(clips, args.split), args.device)
    if not args.skip_speed:
        speed(clips, args.device, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
