"""Embed the TRAINING part's queries and cache them with their plain cnn matches (for fit_keys_grid.py).

    .venv/bin/python benchmarks/private/pk_embed.py --bench benchmarks/work/train0 --bank /tmp/pk/bank --cache /tmp/pk/emb

Per query writes CACHE/<query_id>.npz (allow_pickle=False): timestamps float64 [N], features
float32 [N, D], plain (str array: references of the plain "cnn" matches), error (str). Per
reference writes CACHE/ref__<ref_id>.npz (timestamps, features) from Bank.reference_embedding,
and CACHE/background.npz holds the model calibration's background frames and threshold.
The bank is built beforehand with `vmatch index --bank BANK --device cpu <reference files>`.
Existing cache files are kept, so a rerun only embeds what is missing.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="benchmarks/work/train0")
    ap.add_argument("--bank", default="/tmp/pk/bank")
    ap.add_argument("--cache", default="/tmp/pk/emb")
    args = ap.parse_args(argv)
    from vmatch import Bank
    from vmatch.match import match_query
    from vmatch.sample import embed_video

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    queries = list(csv.DictReader(open(Path(args.bench) / "queries.csv")))
    t0 = time.monotonic()
    with Bank.open(args.bank, device="cpu") as bank:
        for rid in [line.split("\t")[0] for line in (Path(args.bench) / "references.txt").read_text().splitlines() if line.strip()]:
            out = cache / f"ref__{rid}.npz"
            if not out.exists():
                e = bank.reference_embedding(rid)
                np.savez(out, timestamps=np.asarray(e.timestamps, np.float64), features=np.asarray(e.features, np.float32))
        emb = bank.embedder()
        if not (cache / "background.npz").exists():  # the model's public background frames (score normalisation)
            from vmatch.match import calibration_for

            cal = calibration_for(emb)
            np.savez(cache / "background.npz", background=cal.background, threshold=np.array(cal.threshold))
        for i, q in enumerate(queries):
            out = cache / f"{q['query_id']}.npz"
            if out.exists():
                continue
            err = ""
            try:
                e = embed_video(q["path"], emb, keypoints="query", hash_file=False)
                rep = match_query(bank, e)
                plain = sorted({m.reference for m in rep.matches if m.signal_type == "cnn"})
                ts, fs = np.asarray(e.timestamps, np.float64), np.asarray(e.features, np.float32)
            except Exception as ex:  # record and go on
                err, plain, ts, fs = repr(ex), [], np.zeros(0), np.zeros((0, 256), np.float32)
            np.savez(out.with_suffix(".tmp.npz"), timestamps=ts, features=fs, plain=np.array(plain, dtype=str),
                     error=np.array(err))
            out.with_suffix(".tmp.npz").rename(out)
            print(f"{i + 1}/{len(queries)} {q['query_id']} {len(ts)} frames plain={plain} {err} "
                  f"{time.monotonic() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
