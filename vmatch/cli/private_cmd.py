"""Command line, private mode: ``vmatch private publish|voucher|match`` (:mod:`vmatch.private`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vmatch.cli.common import EXIT_OK, EXIT_PARTIAL, _err, _open_bank, _output_dir
from vmatch.errors import VmatchError


def cmd_private(args) -> int:
    return {"publish": _publish, "voucher": _voucher, "match": _match}[args.private_command](args)


def _publish(args) -> int:
    from vmatch.private import KeyParams, PrivateStore

    with _open_bank(args, create=False) as bank, PrivateStore(bank.path) as store:
        params = KeyParams(tables=args.tables, bits=args.bits, probes=args.probes, dim=bank.spec.dim)
        table = store.publish(bank, params=params, threshold=args.threshold)
        data = table.to_bytes()
        where = store.dir / f"table-{table.header.table_version:06d}.vmpt"
        if args.out:
            from vmatch.files import write_atomic

            write_atomic(Path(args.out), data, what="the private table")
            where = Path(args.out)
    print(json.dumps({"table": str(where), "version": table.header.table_version, "commitment": table.commitment,
                      "keys": table.header.n_keys, "slots": table.header.slots, "bytes": len(data),
                      "threshold": table.header.threshold, "keys_per_frame": table.header.keys.keys_per_frame}),
          flush=True)
    return EXIT_OK


def _voucher(args) -> int:
    from vmatch.decode import find_videos
    from vmatch.files import output_name, write_atomic
    from vmatch.private import make_vouchers, read_table
    from vmatch.sample import embed_video
    from vmatch.signals import cnn

    table = read_table(args.table, commitment=args.commitment)
    out_dir = _output_dir(args.out)
    signals = [Path(p) for p in args.paths if str(p).endswith(".vmsig")]
    files, problems = find_videos([p for p in args.paths if not str(p).endswith(".vmsig")]) if \
        len(signals) < len(args.paths) else ([], [])
    for path, reason in problems:
        _err(f"{path}: {reason}")
    embedder = None
    if files:
        if args.onnx:
            from vmatch.onnx_embed import OnnxEmbedder

            embedder = OnnxEmbedder(args.onnx)
        else:
            from vmatch.embed import make_embedder

            embedder = make_embedder(args.model or table.header.model_name, device=args.device)
    failed = len(problems)
    for f in [*files, *signals]:
        try:
            if f.suffix == ".vmsig":
                emb, _ = cnn.read(f)
            else:
                emb = embed_video(f, embedder, fps=args.fps, hash_file=False, keypoints="query")
            bundle = make_vouchers(emb, table)
            data = bundle.to_bytes()
            target = out_dir / output_name(f.stem, ".vmpv")
            write_atomic(target, data, what="the voucher bundle")
        except VmatchError as e:
            failed += 1
            _err(f"{f}: {e}" if str(f) not in str(e) else str(e))
            continue
        print(json.dumps({"file": str(f), "vouchers": str(target), "count": len(bundle.vouchers),
                          "bytes": len(data), "table": table.commitment}), flush=True)
    return EXIT_PARTIAL if failed else EXIT_OK


def _match(args) -> int:
    from vmatch.private import match_vouchers, PrivateStore

    failed = 0
    with _open_bank(args, create=False) as bank, PrivateStore(bank.path) as store:
        for p in args.paths:
            try:
                data = Path(p).read_bytes()
            except OSError as e:
                failed += 1
                _err(f"{p}: cannot read: {e.strerror or e}")
                continue
            try:
                result = match_vouchers(bank, data, store=store, source=str(p))
            except VmatchError as e:
                failed += 1
                _err(str(e))
                continue
            d = {"file": str(p), **result.to_dict()}
            if args.json:
                print(json.dumps(d), flush=True)
            else:
                rep = result.report
                if rep is None:
                    print(f"{p}: below the threshold ({result.vouchers} vouchers)", flush=True)
                elif not rep.matches:
                    print(f"{p}: opened {result.opened_frames} frame(s), no match", flush=True)
                else:
                    for m in rep.matches:
                        s = m.segments[0] if m.segments else None
                        seg = f" query {s.query_start:.1f}-{s.query_end:.1f}s ~ reference {s.reference_start:.1f}-{s.reference_end:.1f}s" if s else ""
                        print(f"{p}: MATCH {m.reference} score {m.score:.3f}{seg}", flush=True)
    print(f"processed {len(args.paths) - failed} of {len(args.paths)} bundle(s)", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK
