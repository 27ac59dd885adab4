"""PDQ in torch (vmatch.signals.pdq) vs Meta's reference (pdqhash) on real decoded frames.

Decodes ``--fps`` frames a second (default 1) from every video in ``--clips`` (default
``../shared/clips`` next to the repository, i.e. /work/shared/clips) at full display size with
:func:`vmatch.decode.iter_frames` (``size=None``), hashes every frame with both implementations and
prints: Hamming distances between the hashes (median, p99, max, share identical), quality
differences, the same for the eight dihedral variants, and the speed of both (frames/s and
megapixels/s; decoding not included).

Run: ``python benchmarks/pdq_compare_clips.py [--device cpu|cuda] [--fps 1] [--exact]`` (needs ``pip install
pdqhash``). Our hashes are computed one clip at a time (all frames of a clip have one size), as
``pdq_hash_batch(np.stack(frames))``; pdqhash hashes one frame per call.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmatch.decode import find_videos, iter_frames  # noqa: E402
from vmatch.errors import DecodeError  # noqa: E402
from vmatch.signals.pdq import pdq_hash_batch  # noqa: E402


def _stats(name: str, dist: np.ndarray, dq: np.ndarray) -> str:
    dist = np.asarray(dist).ravel()
    dq = np.asarray(dq).ravel()
    return (
        f"| {name} | {dist.size} | {np.median(dist):.0f} | {np.percentile(dist, 99):.1f} | {dist.max()} | "
        f"{(dist == 0).mean():.2%} | {np.abs(dq).max()} | {(dq == 0).mean():.2%} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"), help="directory of videos")
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second of video")
    parser.add_argument("--device", default="cpu", help="device for vmatch's PDQ: cpu, cuda, auto")
    parser.add_argument("--no-dihedral", action="store_true", help="skip the dihedral comparison")
    parser.add_argument(
        "--exact", action="store_true", help="use the bit-exact path (exact=True) instead of the default"
    )
    args = parser.parse_args()

    try:
        import pdqhash
    except ImportError:
        print("pdqhash is not installed: pip install pdqhash", file=sys.stderr)
        return 2
    import torch

    videos, problems = find_videos([args.clips])
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not videos:
        print(f"no videos found in {args.clips}", file=sys.stderr)
        return 1

    exact = True if args.exact else None
    # warm-up (lazy imports, CUDA init)
    pdq_hash_batch(np.zeros((2, 96, 128, 3), np.uint8), device=args.device, exact=exact)

    dists: list[np.ndarray] = []
    dquals: list[np.ndarray] = []
    ddists: list[np.ndarray] = []
    ddquals: list[np.ndarray] = []
    t_ours = t_ref = t_ours_d = t_ref_d = t_decode = 0.0
    n_frames = 0
    n_pixels = 0
    sizes: dict[tuple[int, int], int] = {}
    failed: list[str] = []
    for path in videos:
        t0 = time.perf_counter()
        try:
            frames = [rgb for _, rgb in iter_frames(path, fps=args.fps, size=None)]
        except DecodeError as exc:
            failed.append(f"{path.name}: {exc.reason}")
            continue
        t_decode += time.perf_counter() - t0
        if not frames:
            continue
        stack = np.stack(frames)
        h, w = stack.shape[1:3]
        sizes[(w, h)] = sizes.get((w, h), 0) + len(frames)
        n_frames += len(frames)
        n_pixels += stack.shape[0] * h * w

        t0 = time.perf_counter()
        ours = pdq_hash_batch(stack, device=args.device, exact=exact)
        t_ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [pdqhash.compute(f) for f in frames]
        t_ref += time.perf_counter() - t0
        dists.append((ours.bits != np.stack([r[0] for r in ref])).sum(-1))
        dquals.append(ours.quality - np.array([r[1] for r in ref]))

        if not args.no_dihedral:
            t0 = time.perf_counter()
            ours_d = pdq_hash_batch(stack, device=args.device, dihedral=True, exact=exact)
            t_ours_d += time.perf_counter() - t0
            t0 = time.perf_counter()
            ref_d = [pdqhash.compute_dihedral(f) for f in frames]
            t_ref_d += time.perf_counter() - t0
            ddists.append((ours_d.bits != np.stack([np.stack(r[0]) for r in ref_d])).sum(-1))
            ddquals.append(ours_d.quality - np.array([r[1] for r in ref_d]))

    dist = np.concatenate(dists)
    dq = np.concatenate(dquals)
    mpix = n_pixels / 1e6
    dev_name = args.device
    if args.device != "cpu" and torch.cuda.is_available():
        dev_name = f"{args.device} ({torch.cuda.get_device_name()})"
    print("### PDQ: vmatch.signals.pdq vs pdqhash on decoded clips")
    print()
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), pdqhash {getattr(pdqhash, '__version__', '?')}")
    print(f"- clips: {args.clips}: {len(videos)} videos, {len(failed)} undecodable; "
          f"{n_frames} frames at {args.fps:g} fps, full display size ({mpix:.0f} Mpixels); "
          f"decoding took {t_decode:.1f} s")
    top = sorted(sizes.items(), key=lambda kv: -kv[1])
    print("- frame sizes (WxH: frames): " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in top))
    path = "exact (exact=True)" if args.exact else "default (exact=None: fast on CPU, exact on CUDA)"
    print(f"- vmatch device: {dev_name}; path: {path}")
    print()
    print("| hashes | n | median Hamming | p99 | max | identical | max abs quality diff | same quality |")
    print("|---|---|---|---|---|---|---|---|")
    print(_stats("original", dist, dq))
    if ddists:
        dd = np.concatenate(ddists)
        ddq = np.concatenate(ddquals)
        print(_stats("dihedral (8 per frame)", dd, ddq))
    print()
    print("| speed (decoding excluded) | frames/s | Mpixels/s |")
    print("|---|---|---|")
    print(f"| vmatch pdq_hash_batch ({dev_name}) | {n_frames / t_ours:.1f} | {mpix / t_ours:.1f} |")
    print(f"| pdqhash.compute (1 thread) | {n_frames / t_ref:.1f} | {mpix / t_ref:.1f} |")
    if ddists:
        print(f"| vmatch dihedral=True ({dev_name}) | {n_frames / t_ours_d:.1f} | {mpix / t_ours_d:.1f} |")
        print(f"| pdqhash.compute_dihedral | {n_frames / t_ref_d:.1f} | {mpix / t_ref_d:.1f} |")
    for line in failed:
        print(f"- undecodable: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
