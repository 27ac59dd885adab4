#!/usr/bin/env python3
"""Thread settings of overlapped indexing, swept on one file set of throughput.py (issue 7).

    python benchmarks/thread_sweep.py [--set 720p]

Each line indexes the same files (re-added into one bank, model loaded once) with fixed settings:
decode workers, FFmpeg threads per decoder, torch threads for the CNN, ``skip_nonref`` on.
``workers=0`` is decode-then-embed in one thread. Prints × real time; compare lines of one run only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from machine import machine  # noqa: E402
from throughput import files_of  # noqa: E402

#: (workers, FFmpeg threads per decoder (0 = FFmpeg's default), torch threads)
SETTINGS = [(0, 0, 2), (1, 0, 2), (1, 1, 2), (2, 1, 2), (2, 1, 1), (1, 0, 1), (2, 0, 1)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="720p")
    ap.add_argument("--out", default=str(HERE / "work" / "throughput"))
    args = ap.parse_args(argv)
    import torch

    from vmatch import Bank
    from vmatch.decode import probe
    from vmatch.embed import tune_cpu_allocator
    from vmatch.options import DecodeOptions
    from vmatch.parallel import index_files
    from vmatch.pipeline import IndexSummary
    from vmatch.threads import ThreadPolicy

    tune_cpu_allocator()
    work = Path(args.out)
    files = files_of(args.set, work)
    video_s = sum(float(probe(f).duration) for f in files)
    print(f"machine: {machine()}\nset {args.set}: {len(files)} files, {video_s:.1f} s of video, skip_nonref on")
    bank_dir = work / "bank_sweep"
    if bank_dir.exists():
        shutil.rmtree(bank_dir)
    with Bank.open(bank_dir, create=True, device="cpu") as bank:
        emb = bank.embedder()
        emb.embed(np.zeros((2, 224, 224, 3), np.uint8) + 100)  # load + warm-up
        for workers, dthreads, tthreads in SETTINGS:
            bank.remove([f.stem for f in files if bank.get(f.stem)])
            torch.set_num_threads(tthreads)
            s = IndexSummary()
            t = time.monotonic()
            index_files(bank, files, emb, ref_id=None, summary=s, decode=DecodeOptions(skip_nonref=True),
                        threads=ThreadPolicy(workers=workers, decoder_threads=dthreads, cnn_threads=tthreads))
            el = time.monotonic() - t
            print(f"workers={workers} ffmpeg_threads={dthreads or 'default'} torch_threads={tthreads}: "
                  f"{el:.2f} s = {video_s / el:.1f}x real time", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
