"""Private (PSI) mode beside plain matching on one benchmark draw (issue 16).

For every query of a draw (``bench_generate.py`` output): embed once (keypoints for
verification, as `vmatch hash` does), match plainly (the CNN report at the default threshold),
make the voucher bundle against the bank's published table (device side) and open + match it
(server side). Reports per draw: the copies plain matching finds and how many of them the
private mode finds, false matches of both on the negatives, how many negative videos the server
could open (read frames of), the device's CPU time and bytes per minute of video, the server's
time per voucher, and the table's bytes per hour of reference video with its growth to 10^4 and
10^6 hours (extrapolated, marked so).

    python benchmarks/private_bench.py --bench benchmarks/work/bench --bank benchmarks/work/new0/bank_bench \
        --out benchmarks/work/private0
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="a draw made by bench_generate.py")
    ap.add_argument("--bank", required=True, help="its reference bank (bench_run.py's OUT/bank_bench); copied")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threshold", type=int, default=3, help="frames that open a video")
    ap.add_argument("--limit", type=int, default=None, help="first N queries only (smoke runs)")
    args = ap.parse_args(argv)

    from vmatch.bank import Bank
    from vmatch.match import match_query
    from vmatch.private import PrivateStore, make_vouchers, match_vouchers
    from vmatch.sample import embed_video

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bank_dir = out / "bank"
    if bank_dir.exists():
        shutil.rmtree(bank_dir)
    shutil.copytree(args.bank, bank_dir, ignore=shutil.ignore_patterns("private", ".lock*"))
    bench = Path(args.bench)
    queries = list(csv.DictReader(open(bench / "queries.csv")))[: args.limit]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    with Bank.open(bank_dir, device="cpu") as bank, PrivateStore(bank_dir) as store:
        info = bank.info()
        t0 = time.perf_counter()
        table = store.publish(bank, threshold=args.threshold)
        publish_s = time.perf_counter() - t0
        table_bytes = len(table.to_bytes())
        embedder = bank.embedder()
        for i, q in enumerate(queries):
            emb = embed_video(q["path"], embedder, keypoints="query", hash_file=False)
            plain = match_query(bank, emb)
            t1 = time.process_time()
            bundle = make_vouchers(emb, table)
            data = bundle.to_bytes()
            device_cpu = time.process_time() - t1
            t2 = time.perf_counter()
            res = match_vouchers(bank, data, store=store, source=q["query_id"])
            server_s = time.perf_counter() - t2
            found = lambda rep: sorted({m.reference for m in rep.matches if m.signal_type == "cnn"}) if rep else []
            rows.append({"query_id": q["query_id"], "kind": q["kind"], "family": q["family"],
                         "reference_id": q["reference_id"], "duration": float(q["duration"]), "frames": len(emb),
                         "plain": found(plain), "private": found(res.report), "status": res.status,
                         "opened_frames": res.opened_frames, "vouchers": len(bundle.vouchers), "bytes": len(data),
                         "device_cpu_s": device_cpu, "server_s": server_s})
            if (i + 1) % 20 == 0:
                print(f"{i + 1}/{len(queries)} queries", file=sys.stderr, flush=True)

    pos = [r for r in rows if r["kind"] == "positive"]
    neg = [r for r in rows if r["kind"] != "positive"]
    plain_found = [r for r in pos if r["reference_id"] in r["plain"]]
    both = [r for r in plain_found if r["reference_id"] in r["private"]]
    priv_only = [r for r in pos if r["reference_id"] in r["private"] and r["reference_id"] not in r["plain"]]
    false_plain = [r for r in neg if r["plain"]] + [r for r in pos if set(r["plain"]) - {r["reference_id"]}]
    false_priv = [r for r in neg if r["private"]] + [r for r in pos if set(r["private"]) - {r["reference_id"]}]
    neg_opened = [r for r in neg if r["status"] == "opened"]
    minutes = sum(r["duration"] for r in rows) / 60
    n_v = sum(r["vouchers"] for r in rows)
    ref_hours = info["seconds"] / 3600
    per_hour = table_bytes / ref_hours
    by_family: dict[str, list[int]] = {}
    for r in plain_found:
        f = by_family.setdefault(r["family"], [0, 0])
        f[0] += 1
        f[1] += r["reference_id"] in r["private"]
    summary = {
        "bench": str(bench), "machine": machine(), "started": started, "queries": len(rows),
        "threshold_frames": args.threshold, "keys": table.header.keys.to_dict(),
        "positives": len(pos), "plain_found": len(plain_found), "private_found_of_plain": len(both),
        "private_share_of_plain": len(both) / max(1, len(plain_found)), "private_found_not_plain": len(priv_only),
        "negatives": len(neg), "false_matches_plain": len(false_plain), "false_matches_private": len(false_priv),
        "negatives_opened": len(neg_opened), "negatives_opened_share": len(neg_opened) / max(1, len(neg)),
        "per_family_private_of_plain": by_family,
        "device_cpu_s_per_min": sum(r["device_cpu_s"] for r in rows) / minutes,
        "voucher_bytes_per_min": sum(r["bytes"] for r in rows) / minutes,
        "vouchers_per_min": n_v / minutes,
        "server_ms_per_voucher": 1000 * sum(r["server_s"] for r in rows) / max(1, n_v),
        "reference_hours": ref_hours, "table_keys": table.header.n_keys, "table_bytes": table_bytes,
        "table_bytes_per_ref_hour": per_hour, "publish_s": publish_s,
        "table_bytes_1e4_hours_extrapolated": per_hour * 1e4, "table_bytes_1e6_hours_extrapolated": per_hour * 1e6,
    }
    (out / "private_results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
