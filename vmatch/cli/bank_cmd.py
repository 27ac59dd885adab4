"""Command line, the bank's administration: ``vmatch import`` / ``export`` (hash lists and vPDQ
files, no media), ``remove``, ``info``, ``list`` and ``shard split|ann``.
"""

from __future__ import annotations

import json
import sys

from vmatch.cli.common import _err, _open_bank, _output_dir, _read_hash_lines, _read_vpdq, _vpdq_id, EXIT_OK, EXIT_PARTIAL
from vmatch.errors import UsageError
from vmatch.report import info_json, info_lines, reference_json, reference_line
from vmatch.signals.registry import VPDQSignal


def cmd_import(args) -> int:
    if args.signal_type == VPDQSignal.name:
        frames = _read_vpdq(args.file)
        rid = args.ref_id or _vpdq_id(args.file)
        bank = _open_bank(args, create=True)
        try:
            n = bank.add_vpdq(rid, frames)
        finally:
            bank.close()
        print(f"imported the vPDQ hash of {rid} ({n} frames) from {args.file}", file=sys.stderr)
        return EXIT_OK
    if args.ref_id is not None:
        raise UsageError("--id is only for --signal-type vpdq (hash lists carry their ids)")
    rows, problems = _read_hash_lines(args.file, args.signal_type, with_id=True)
    for msg in problems:
        _err(msg)
    added = 0
    if rows:
        bank = _open_bank(args, create=True)
        try:
            added = bank.add_hashes([(rid, t, v) for t, v, rid in rows])
        finally:
            bank.close()
    print(
        f"imported {added} new hash(es) of {len(rows)} good line(s) from {args.file}"
        + (f"; {len(problems)} malformed line(s) skipped" if problems else ""),
        file=sys.stderr,
    )
    return EXIT_PARTIAL if problems else EXIT_OK


def cmd_export(args) -> int:
    from vmatch.files import output_name
    from vmatch.signals.vpdq import write_file

    if args.signal_type == VPDQSignal.name and args.out is None:
        raise UsageError("--signal-type vpdq needs --out DIR (one vPDQ file per reference)")
    bank = _open_bank(args, create=False)
    failed = 0
    try:
        if args.signal_type == VPDQSignal.name:
            out = _output_dir(args.out)
            for ref in bank.list():
                frames = bank.vpdq_of(ref.reference)
                if not frames:
                    continue
                try:
                    print(write_file(out / output_name(ref.reference, VPDQSignal.FILE_SUFFIX), frames), flush=True)
                except UsageError as e:  # this reference's file; the others are still written
                    failed += 1
                    _err(str(e))
        else:
            for rid, t, v in bank.hashes(args.signal_type):
                print(f"{t} {v} {rid}")
    finally:
        bank.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_remove(args) -> int:
    with _open_bank(args, create=False) as bank:
        removed = bank.remove(args.ids)
    missing = [i for i in args.ids if i not in removed]
    for i in removed:
        print(f"removed {i}")
    for i in missing:
        _err(f"{i}: no such reference in {args.bank}")
    return EXIT_PARTIAL if missing else EXIT_OK


def cmd_shard(args) -> int:
    from vmatch.bank import Bank
    from vmatch.shard_split import split_bank
    from vmatch.shards import ShardedBank

    if args.shard_command == "split":
        with Bank.open(args.bank) as src:
            out = split_bank(src, args.out, args.shards)
            try:
                n = [len(b.list()) for b in out.shards]
            finally:
                out.close()
        print(f"split {sum(n)} reference(s) of {args.bank} into {len(n)} shards at {args.out}: {n}", file=sys.stderr)
        return EXIT_OK
    with ShardedBank.open(args.bank) as bank:
        for rec in bank.build_ann(args.index_type, nprobe=args.nprobe):
            print(json.dumps(rec, sort_keys=True), flush=True)
    return EXIT_OK


def cmd_info(args) -> int:
    with _open_bank(args, create=False) as bank:
        info = bank.info()
    print(info_json(info) if args.json else "\n".join(info_lines(info)))
    return EXIT_OK


def cmd_list(args) -> int:
    with _open_bank(args, create=False) as bank:
        refs = bank.list()
    for r in refs:
        print(reference_json(r) if args.json else reference_line(r))
    return EXIT_OK

