#!/usr/bin/env python3
"""How far apart two benchmark runs really are: pair micro-AP of each and a paired-bootstrap
confidence interval of the difference (the benchmark's queries resampled, both runs scored on
the same resample).

    python benchmarks/compare_runs.py BASELINE/predictions_vmatch.csv OTHER/predictions_vmatch.csv \\
        [--bench benchmarks/work/bench] [--n 2000] [--seed 0]

The prediction files are those ``bench_run.py`` writes (``predictions_<system>.csv``); both must
come from the same benchmark set (``--bench``). Prints one Markdown row per OTHER file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_metrics as bm  # noqa: E402


def read_predictions(path: Path) -> dict[tuple, float]:
    """Best score per (query, reference) pair of a ``predictions_<system>.csv``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise SystemExit(f"{path}: cannot read the predictions ({exc})") from None
    need = {"query_id", "ref_id", "score"}
    if rows and not need <= set(rows[0]):
        raise SystemExit(f"{path}: not a bench_run.py predictions file (needs columns {sorted(need)})")
    try:
        return bm.pair_scores(bm.Box(r["query_id"], r["ref_id"], 0, 0, 0, 0, float(r["score"])) for r in rows)
    except ValueError as exc:
        raise SystemExit(f"{path}: bad score ({exc})") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("others", type=Path, nargs="+")
    ap.add_argument("--bench", type=Path, default=HERE / "work" / "bench")
    ap.add_argument("--n", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        with open(args.bench / "queries.csv", newline="") as fh:
            queries = [r["query_id"] for r in csv.DictReader(fh)]
        with open(args.bench / "ground_truth.csv", newline="") as fh:
            gt = {(r["query_id"], r["reference_id"]) for r in csv.DictReader(fh)}
    except (OSError, KeyError) as exc:
        raise SystemExit(f"{args.bench}: not a benchmark folder of bench_generate.py ({exc})") from None
    base = read_predictions(args.baseline)
    print(f"{len(queries)} queries, {len(gt)} true pairs, {args.n} paired resamples (seed {args.seed}); "
          f"baseline {args.baseline}")
    print()
    print("| run | pair µAP | baseline µAP | difference | 95 % interval | resamples below baseline |")
    print("|---|---|---|---|---|---|")
    for other in args.others:
        r = bm.paired_bootstrap_micro_ap(gt, base, read_predictions(other), queries, n=args.n, seed=args.seed)
        print(f"| {other} | {r['b']:.3f} | {r['a']:.3f} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] "
              f"| {100 * r['p_b_below_a']:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
