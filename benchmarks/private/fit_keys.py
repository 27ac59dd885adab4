"""Choose the private mode's match keys on the benchmark's TRAINING part (issue 16).

What opens in the private mode is decided by key collisions alone (a frame opens when one of its
device keys is a key of some reference frame; a video opens at ``t`` such frames), and what is
then reported is the plain match of the opened frames. So the scheme can be chosen without the
cryptography: per (bits, tables, probes, t) this counts, on the training part, the copies plain
matching finds that the private mode still finds (plain match of the opened frames), the
negatives whose videos would open (a privacy cost; they are still rejected by the scoring), and
the vouchers per frame and table keys per reference hour.

    python benchmarks/private/fit_keys.py --bench benchmarks/work/train0 --out benchmarks/private/fit_keys.md
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))

from machine import machine  # noqa: E402

GRID = [(20, 8, 1), (16, 8, 1), (16, 16, 1), (14, 16, 1), (12, 16, 0), (12, 16, 1), (12, 24, 1), (10, 16, 1),
        (14, 24, 2), (12, 32, 1)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="benchmarks/work/train0")
    ap.add_argument("--work", default="/tmp/fitkeys")
    ap.add_argument("--out", default=str(HERE / "fit_keys.md"))
    args = ap.parse_args(argv)

    from vmatch import Bank
    from vmatch.match import match_query
    from vmatch.options import DecodeOptions
    from vmatch.pipeline import index_videos
    from vmatch.private.lsh import KeyParams, query_keys
    from vmatch.private.table import bank_keys
    from vmatch.sample import embed_video
    from vmatch.types import VideoEmbedding

    bench = Path(args.bench)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    refs = [line.split("\t") for line in (bench / "references.txt").read_text().splitlines() if line.strip()]
    queries = list(csv.DictReader(open(bench / "queries.csv")))
    bank_dir = work / "bank"
    t0 = time.monotonic()
    if not (bank_dir / "bank.sqlite").exists():
        with Bank.open(bank_dir, create=True, device="cpu") as bank:
            for rid, path in refs:
                index_videos(bank, [path.strip()], decode=DecodeOptions(keypoints="reference"), ref_id=rid)
            bank.save_index()
    lines = [f"# Private-mode key scheme on the training part ({bench})", "",
             f"Machine: {machine()}. Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    with Bank.open(bank_dir, device="cpu") as bank:
        info = bank.info()
        emb_model = bank.embedder()
        embs, plain = {}, {}
        for q in queries:
            e = embed_video(q["path"], emb_model, keypoints="query", hash_file=False)
            embs[q["query_id"]] = e
            plain[q["query_id"]] = {m.reference for m in match_query(bank, e).matches if m.signal_type == "cnn"}
        print(f"embedded {len(queries)} queries in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        pos = [q for q in queries if q["kind"] == "positive"]
        neg = [q for q in queries if q["kind"] != "positive"]
        found = [q for q in pos if q["reference_id"] in plain[q["query_id"]]]
        false_plain = sum(bool(plain[q["query_id"]]) for q in neg)
        lines += [f"{len(queries)} queries ({len(pos)} positive, {len(neg)} negative); {len(refs)} references, "
                  f"{info['frames']} reference frames ({info['seconds'] / 3600:.3f} h). Plain matching finds "
                  f"{len(found)} of {len(pos)} copies and flags {false_plain} negatives.", "",
                  "| bits | tables | probes | vouchers/frame | table keys/ref h | t | found of plain | negatives opened | false matches |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for bits, tables, probes in GRID:
            params = KeyParams(bits=bits, tables=tables, probes=probes, dim=bank.spec.dim)
            table = set(bank_keys(bank, params))
            hits = {}
            for qid, e in embs.items():
                keys = query_keys(e.features, params) if len(e) else []
                hits[qid] = np.array([any(k in table for k in ks) for ks in keys], bool)
            for t in (2, 3, 4):
                got, opened_neg, false_priv = 0, 0, 0
                for q in queries:
                    h = hits[q["query_id"]]
                    if h.sum() < t:
                        continue
                    e = embs[q["query_id"]]
                    sub = VideoEmbedding(video_id=e.video_id, timestamps=e.timestamps[h], features=e.features[h],
                                         duration=e.duration, model_id=e.model_id, local=e.local.select(h))
                    refs_found = {m.reference for m in match_query(bank, sub).matches if m.signal_type == "cnn"}
                    if q["kind"] == "positive":
                        got += q["reference_id"] in refs_found and q["reference_id"] in plain[q["query_id"]]
                    else:
                        opened_neg += 1
                        false_priv += bool(refs_found)
                lines.append(f"| {bits} | {tables} | {probes} | {params.keys_per_frame} | "
                             f"{len(table) / (info['seconds'] / 3600):,.0f} | {t} | {got}/{len(found)} "
                             f"({got / max(1, len(found)):.0%}) | {opened_neg}/{len(neg)} ({opened_neg / max(1, len(neg)):.0%}) | {false_priv} |")
                print(lines[-1], file=sys.stderr, flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
