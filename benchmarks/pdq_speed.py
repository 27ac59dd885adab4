"""Speed of vmatch's PDQ (``pdq_hash_batch``) on decoded-like 720p frames, CPU and CUDA.

Frames are random *smooth* 1280x720 uint8 RGB images (coarse noise upsampled, as decoded video
looks to the filter), made once and reused. For each device (CPU always; CUDA when available) and
each path (the default: fast on CPU, exact on CUDA; and ``exact=True`` / ``exact=False``), prints
frames/s of ``pdq_hash_batch`` (plain and ``dihedral=True``), median of a few
timed runs after a warm-up; for a CUDA device the frames are timed both from host numpy arrays
(upload included) and from a uint8 tensor already on the GPU. When ``pdqhash`` is installed its
one-frame-at-a-time speed is printed too, and the hashes are checked to be equal.

Run: ``python benchmarks/pdq_speed.py [--frames 64] [--repeats 3]`` (runs unchanged on a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmatch.signals.pdq import pdq_hash_batch  # noqa: E402


def smooth_frames(n: int, height: int = 720, width: int = 1280, seed: int = 0) -> np.ndarray:
    """``n`` smooth random RGB frames ``uint8 [n, height, width, 3]``."""
    import torch

    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, height // 40, width // 40)).astype(np.float32))
    up = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0, 4, (n, 3, height, width)).astype(np.float32))
    return (up + noise).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    import torch

    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="frames per timed call (CPU)")
    parser.add_argument("--gpu-frames", type=int, default=512, help="frames per timed call (CUDA)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    n_max = max(args.frames, args.gpu_frames if torch.cuda.is_available() else 0)
    frames = smooth_frames(n_max)
    print("### PDQ speed, 1280x720 smooth random frames")
    print()
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} CPU threads)")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        print(f"- GPU: {torch.cuda.get_device_name()}")
    print()
    print("| implementation | device | input | frames per call | batch_size | frames/s |")
    print("|---|---|---|---|---|---|")
    reference = pdq_hash_batch(frames[: args.frames], exact=True)
    fast = pdq_hash_batch(frames[: args.frames], exact=False)
    for device in devices:
        n = args.frames if device == "cpu" else args.gpu_frames
        sample = frames[:n]
        name = "cpu" if device == "cpu" else f"cuda ({torch.cuda.get_device_name()})"
        inputs = [("numpy (host)", sample)]
        if device == "cuda":
            inputs.append(("uint8 tensor on GPU", torch.from_numpy(sample).cuda()))
        for label, data in inputs:
            for exact in (False, True):
                for dihedral in (False, True):
                    secs = timed(
                        lambda d=data, dev=device, dh=dihedral, ex=exact: pdq_hash_batch(
                            d, device=dev, dihedral=dh, exact=ex
                        ),
                        args.repeats,
                    )
                    what = f"pdq_hash_batch exact={exact}" + (" dihedral" if dihedral else "")
                    print(f"| {what} | {name} | {label} | {n} | auto | {n / secs:.1f} |")
        if device == "cuda":
            got = pdq_hash_batch(frames[: args.frames], device="cuda", exact=True)
            same = (got.bits == reference.bits).all(axis=1).mean()
            print(f"| (check) CUDA == CPU hashes | | | {args.frames} | | {same:.1%} identical |")
    try:
        import pdqhash
    except ImportError:
        print("\n(pdqhash not installed: no reference timing)")
        return 0
    sample = list(frames[: min(args.frames, 32)])
    secs = timed(lambda: [pdqhash.compute(f) for f in sample], args.repeats)
    print(f"| pdqhash.compute (C++, 1 thread) | cpu | numpy | {len(sample)} | 1 | {len(sample) / secs:.1f} |")
    secs = timed(lambda: [pdqhash.compute_dihedral(f) for f in sample], args.repeats)
    print(f"| pdqhash.compute_dihedral | cpu | numpy | {len(sample)} | 1 | {len(sample) / secs:.1f} |")
    ref_bits = np.stack([pdqhash.compute(f)[0] for f in sample])
    same = (ref_bits == reference.bits[: len(sample)]).all(axis=1).mean()
    print(f"| (check) vmatch exact == pdqhash hashes | | | {len(sample)} | | {same:.1%} identical |")
    dist = (ref_bits != fast.bits[: len(sample)]).sum(axis=1)
    print(
        f"| (check) vmatch fast vs pdqhash | | | {len(sample)} | | {(dist == 0).mean():.1%} identical, "
        f"max {dist.max()} bits |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
