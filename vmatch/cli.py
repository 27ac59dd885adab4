"""Command line: ``vmatch index | match | hash | lookup | import | export | remove | info | list | demo | serve | key``.

Exit codes: 0 success; 1 some inputs failed (the others were processed); 2 usage errors (bad
flags, missing or corrupted bank, model mismatch); 130 interrupted.

Heavy modules (torch, faiss, av) are imported inside the commands so that ``vmatch --help`` is
instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from vmatch import __version__
from vmatch.errors import BankError, ModelMismatchError, UsageError, VmatchError

DEFAULT_BANK = "index"

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(msg: str) -> None:
    print(f"vmatch: error: {msg}", file=sys.stderr, flush=True)


def _number(text: str, ok, requirement: str) -> float:
    """``text`` as a float for which ``ok`` holds, else argparse's error saying ``requirement``."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
    return v


def _fps(text: str) -> float:
    return _number(text, lambda v: 0 < v <= 120, "> 0 and <= 120 frames per second")


def _score(text: str) -> float:
    """A score bound (``--threshold``, ``--min-score``): a finite number within [-1, 1], the range
    of the scores vmatch reports (NaN or 1e400 would print as NaN/Infinity, which is not JSON)."""
    return _number(text, lambda v: -1.0 <= v <= 1.0, "a finite number within [-1, 1]")


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port within 1..65535, got {v}")
    return v


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bank", default=DEFAULT_BANK, metavar="DIR", help=f"bank directory (default: ./{DEFAULT_BANK})"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")

    embed_opts = argparse.ArgumentParser(add_help=False)
    embed_opts.add_argument(
        "--device", default="auto", help="where the CNN runs: auto (GPU if present), cpu, cuda, cuda:N"
    )
    embed_opts.add_argument(
        "--fps", type=_fps, default=None, help="sampled frames per second (default 1; `index --fast`: 0.5)"
    )
    embed_opts.add_argument("--batch-size", type=int, default=32, help="frames per CNN batch (default 32)")
    embed_opts.add_argument(
        "--compile", action="store_true",
        help="run the CNN through torch.compile (pays ~0.5 min of compilation first; worth it on long runs and GPUs)",
    )
    embed_opts.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="the CNN's arithmetic: auto (fp32 on CPU, bf16/fp16 on a GPU); bf16 on a CPU with AVX512-BF16 "
        "or AMX is ~1.6x faster, embeddings within cosine ~0.99 of fp32 (benchmarks/RESULTS.md)",
    )
    embed_opts.add_argument(
        "--threads", type=int, default=None, help="CPU threads for the CNN (default: all cores; a third of them while `index` decodes in parallel)"
    )

    p = argparse.ArgumentParser(
        prog="vmatch",
        description="Near-duplicate video matching: index known videos into a bank, match uploads against it.",
    )
    p.add_argument("--version", action="version", version=f"vmatch {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pi = sub.add_parser(
        "index", parents=[common, embed_opts], help="add reference videos (files or directories) to a bank"
    )
    pi.add_argument("paths", nargs="+", metavar="PATH")
    pi.add_argument("--id", dest="ref_id", default=None, help="reference id (only with a single file)")
    pi.add_argument("--vpdq", action="store_true", help="also store each video's vPDQ hash (a second decode)")
    pi.add_argument(
        "--model", default=None,
        help="model of a new bank (default: effnet-lite0-gem; effnet-lite0-gem-fast: one CNN pass at 160x160, "
        "3.5x the CNN throughput, lower accuracy); must match an existing bank",
    )
    pi.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="decode threads running ahead of the CNN (default: one per core, one fewer with a GPU; 0: none)",
    )
    pi.add_argument(
        "--skip-nonref", action="store_true",
        help="fast decoding: skip non-reference frames (B-frames); a sampled frame may be a neighbour of the exact one",
    )
    pi.add_argument(
        "--skip-loop-filter", action="store_true",
        help="fast decoding: skip the deblocking (loop) filter; ~20 %% less decoding work, slightly blockier frames",
    )
    pi.add_argument(
        "--fast", action="store_true",
        help="fast reference mode: --fps 0.5 --keyframes 2 --skip-nonref --skip-loop-filter, and --precision "
        "bf16 on a CPU that has it (each unless given): the fastest CPU indexing at the default model's pair "
        "accuracy; the located reference segments are coarser (figures: benchmarks/RESULTS.md). Queries are "
        "always sampled exactly",
    )
    pi.add_argument(
        "--keyframes", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
        help="fast mode for references: a GOP up to SECONDS long (default 2) is decoded as its keyframe alone, "
        "longer ones in full; much faster on short-GOP uploads (see benchmarks/RESULTS.md for its accuracy cost)",
    )
    pi.add_argument("--shards", type=int, default=None, metavar="N",
                    help="create the bank as N shards (split by reference id), searched together")
    pi.add_argument("--shard", type=int, default=None, metavar="I",
                    help="sharded bank: index only the files whose reference belongs to shard I "
                    "(to build the shards independently, e.g. one process or machine each)")
    pi.add_argument("--ray", action="store_true", help="run on a Ray cluster: decode on CPU tasks, embed on actors "
                    "(GPU when the cluster has GPUs): $RAY_ADDRESS or the cluster `ray start` started on this machine, "
                    "else a new local one (or --ray-address). Needs `pip install 'vmatch[ray]'`")
    pi.add_argument("--ray-address", default=None, metavar="ADDRESS",
                    help="the cluster for --ray (implies it): HOST:PORT or ray://HOST:PORT of an existing cluster, "
                    "'auto' (an existing cluster), 'local' (a new local one)")
    pi.add_argument("--ray-actors", type=int, default=None, metavar="N",
                    help="with --ray: embedding actors (default: one per GPU, else one per 2 CPUs)")
    pi.add_argument("--no-wait", action="store_true",
                    help="when another process is writing the bank, stop at once (exit 2) instead of waiting for it")

    pm = sub.add_parser("match", parents=[common, embed_opts], help="match query videos against a bank")
    pm.add_argument("paths", nargs="+", metavar="PATH")
    pm.add_argument("--json", action="store_true", help="one JSON object per query per line on stdout")
    pm.add_argument(
        "--min-score", type=_score, default=None, help="list matches scoring at least this (default: the threshold)"
    )
    pm.add_argument(
        "--threshold", type=_score, default=None, help="decision threshold (default: the model's calibration)"
    )
    pm.add_argument("--search-device", default="cpu", metavar="DEVICE",
                    help="where frame search runs: cpu (default) or cuda[:N] (exact, on the GPU; needs the gpu extra, "
                         "faiss-gpu in place of faiss-cpu)")
    pm.add_argument("--ray", action="store_true",
                    help="match on a Ray cluster (queries decoded and embedded on the cluster; same output); see index --ray")
    pm.add_argument("--ray-address", default=None, metavar="ADDRESS", help="the cluster for --ray (implies it); see index")
    pm.add_argument("--ray-actors", type=int, default=None, metavar="N", help="with --ray: embedding actors")

    ph = sub.add_parser(
        "hash",
        parents=[embed_opts],
        help="compute a video's signals without matching (for matching without the media)",
        description="Write each video's CNN signal (frame embeddings + timestamps, format "
        "vmatch-cnn-signal v1) to OUT/<name>.vmsig and its vPDQ hash to OUT/<name>.vpdq.txt, and print "
        "one JSON line per video with its MD5/SHA-1/SHA-256. `vmatch lookup` matches them like "
        "`vmatch match` matches the video.",
    )
    ph.add_argument("paths", nargs="+", metavar="PATH")
    ph.add_argument("--out", default=".", metavar="DIR", help="where to write the .vmsig files (default: .)")
    ph.add_argument("--model", default=None, help="model (default: effnet-lite0-gem); must be the bank's")

    plk = sub.add_parser(
        "lookup", parents=[common], help="match signals (from `vmatch hash`) against a bank, without the media"
    )
    plk.add_argument("paths", nargs="+", metavar="FILE")
    plk.add_argument(
        "--signal-type",
        default="cnn",
        choices=["cnn", "vpdq", "pdq", "md5", "sha1"],
        help="cnn: .vmsig files from `vmatch hash`; vpdq: vPDQ hash files (vpdq / python-threatexchange "
        "formats); md5/sha1: text files of hash values, one per line (`<value>` or `<signal_type> <value>`)",
    )
    plk.add_argument("--json", action="store_true", help="one JSON object per signal file per line on stdout")
    plk.add_argument("--min-score", type=_score, default=None)
    plk.add_argument("--threshold", type=_score, default=None)

    pim = sub.add_parser(
        "import",
        parents=[common],
        help="import a list of hashes with their ids into a bank (no media needed)",
        description="Each line: `<signal_type> <value> <id>` (python-threatexchange's `<signal_type> <value>` "
        "layout plus the id), or `<value> <id>` with --signal-type. Blank lines and # comments are skipped.",
    )
    pim.add_argument("file", metavar="FILE")
    pim.add_argument("--signal-type", default=None, choices=["md5", "sha1", "pdq", "vpdq"],
                     help="vpdq: FILE is one video's vPDQ hash file; its id is --id or the file name")
    pim.add_argument("--id", dest="ref_id", default=None, help="reference id of a vPDQ file")

    pex = sub.add_parser("export", parents=[common], help="export a bank's hashes (`<signal_type> <value> <id>` lines)")
    pex.add_argument("--signal-type", default=None, choices=["md5", "sha1", "pdq", "vpdq"])
    pex.add_argument("--out", default=None, metavar="DIR", help="with --signal-type vpdq: write DIR/<id>.vpdq.txt")

    pr = sub.add_parser("remove", parents=[common], help="remove references by id")
    pr.add_argument("ids", nargs="+", metavar="ID")

    pinfo = sub.add_parser("info", parents=[common], help="summary of a bank")
    pinfo.add_argument("--json", action="store_true")

    pl = sub.add_parser("list", parents=[common], help="list the references of a bank")
    pl.add_argument("--json", action="store_true")

    psh = sub.add_parser("shard", help="sharded banks: split a bank into shards, build compressed indexes")
    shsub = psh.add_subparsers(dest="shard_command", metavar="ACTION")
    shsub.required = True
    pss = shsub.add_parser("split", parents=[common], help="copy a bank's references into N shards at --out")
    pss.add_argument("--out", required=True, metavar="DIR", help="the new sharded bank")
    pss.add_argument("--shards", type=int, required=True, metavar="N")
    psa = shsub.add_parser(
        "ann", parents=[common],
        help="build each shard's compressed index (chosen by its size) and print its measured recall",
    )
    psa.add_argument("--type", dest="index_type", default="auto", choices=["auto", "flat", "ivf", "ivfpq", "opqivfpq"],
                     help="auto: Flat < 2e5 frames <= IVF-Flat < 2e6 <= IVF-PQ < 2e7 <= OPQ+IVF-PQ")
    psa.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default nlist/16, >= 16)")

    pd = sub.add_parser(
        "demo", parents=[embed_opts], help="generate a few videos, index them, match an edited copy"
    )
    pd.add_argument("--workdir", default=None, help="where to write the demo videos and bank (default: a temp dir)")
    pd.add_argument("--fake-model", action="store_true", help=argparse.SUPPRESS)

    ps = sub.add_parser(
        "serve",
        help="run the HTTP matching service (FastAPI + uvicorn)",
        description="Serve the banks under --bank-root over HTTP (OpenAPI at /docs and /openapi.json). "
        "Every endpoint but /status/live needs an API key: make one with `vmatch key create`.",
    )
    ps.add_argument("--bank-root", required=True, metavar="DIR", help="directory of the banks (one sub-directory each) and the key store")
    ps.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ps.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    ps.add_argument("--device", default="auto", help="where the CNN runs: auto, cpu, cuda")
    ps.add_argument("--model", default=None, help="model of banks created without one (default: effnet-lite0-gem)")
    ps.add_argument("--fps", type=_fps, default=1.0, help="sampled frames per second (default 1)")
    ps.add_argument("--workers", type=int, default=None, help="jobs run in parallel (default: cores, at most 4)")
    ps.add_argument("--queue-size", type=int, default=32, help="jobs that may wait for a worker; beyond: 503 + Retry-After (default 32)")
    ps.add_argument("--threads", type=int, default=None, help="CPU threads of the CNN (default: cores / workers)")
    ps.add_argument("--max-upload-mb", type=float, default=512.0, help="largest upload, MiB (413; default 512)")
    ps.add_argument("--max-duration", type=float, default=3600.0, help="longest video, seconds (422; default 3600)")
    ps.add_argument("--max-side", type=int, default=4096, help="largest frame side, pixels (422; default 4096)")
    ps.add_argument("--max-frames", type=int, default=500_000, help="most frames a video may hold (422; default 500000)")
    ps.add_argument("--sync-max-duration", type=float, default=120.0,
                    help="mode=auto answers videos up to this many seconds in the request, longer ones with 202 + job id (default 120)")
    ps.add_argument("--sync-wait", type=float, default=120.0, help="seconds a synchronous request waits before answering 202 (default 120)")
    ps.add_argument("--job-timeout", type=float, default=900.0, help="time limit of one job, seconds (default 900)")
    ps.add_argument("--media-root", default=None, metavar="DIR", help="allow adding references by server-side path inside DIR")
    ps.add_argument("--upload-dir", default=None, metavar="DIR", help="where uploads are streamed (default BANK_ROOT/.uploads)")
    ps.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    ps.add_argument("--allow-test-models", action="store_true",
                    help="let POST /banks create banks of the weight-free test model fake-thumbnail (tests, demos)")

    pk = sub.add_parser("key", help="create, list and revoke the service's API keys")
    ksub = pk.add_subparsers(dest="key_command", metavar="ACTION")
    ksub.required = True
    kc = ksub.add_parser("create", help="create a key and print it once (only its SHA-256 is stored)")
    kc.add_argument("--bank-root", required=True, metavar="DIR")
    kc.add_argument("--scope", required=True, help="comma-separated: match, curate, admin (admin may do everything)")
    kc.add_argument("--name", required=True, help="who or what uses the key")
    kl = ksub.add_parser("list", help="list keys (ids, names, scopes; never the secrets)")
    kl.add_argument("--bank-root", required=True, metavar="DIR")
    kl.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke", help="revoke keys by id (effective on the next request)")
    kr.add_argument("--bank-root", required=True, metavar="DIR")
    kr.add_argument("key_ids", nargs="+", metavar="KEY_ID")
    return p


def _open_bank(args, *, create: bool, model=None):
    """The bank at ``--bank``: a :class:`~vmatch.shards.ShardedBank` when the directory holds one
    (or ``index --shards N`` creates one), else a :class:`~vmatch.bank.Bank`."""
    from vmatch.bank import Bank
    from vmatch.shards import ShardedBank, is_sharded

    device = getattr(args, "device", "auto")
    n_shards = getattr(args, "shards", None)
    search_device = getattr(args, "search_device", "cpu")
    if is_sharded(args.bank) or (create and n_shards is not None):
        if search_device != "cpu":
            raise UsageError("--search-device cuda is for unsharded banks; a sharded bank searches on the CPU")
        return ShardedBank.open(args.bank, create=create, n_shards=n_shards, model=model, device=device)
    return Bank.open(args.bank, create=create, model=model, device=device, search_device=search_device)


def _ray_engine(bank, args):
    """The Ray engine for ``--ray`` (imports Ray; only called when the flag is given)."""
    from vmatch.distributed import RayEngine, RayOptions

    opts = RayOptions(
        address=args.ray or None,
        num_actors=args.ray_actors,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        precision=args.precision,
    )
    return RayEngine(bank.spec, opts)


def _prepare_embedder(bank, args) -> None:
    from vmatch.embed import make_embedder, tune_cpu_allocator

    tune_cpu_allocator()
    bank.set_embedder(
        make_embedder(bank.spec, device=args.device, batch_size=args.batch_size, threads=args.threads,
                      compile=args.compile, precision=args.precision)
    )


class _Progress:
    """A progress bar over seconds of video on a terminal; silent otherwise."""

    def __init__(self, total: float, desc: str) -> None:
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=round(total, 1), desc=desc, unit="s", unit_scale=False, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s video [{elapsed}<{remaining}]")

    def __call__(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(seconds)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _apply_fast_mode(args) -> None:
    """``index --fast``: fill the options the user left unset with the fast reference mode's values
    (:data:`vmatch.pipeline.FAST_REFERENCE_MODE`; ``--fps`` is filled in :func:`main`)."""
    from vmatch.options import fast_mode_precision, FAST_REFERENCE_MODE

    if args.keyframes is None:
        args.keyframes = FAST_REFERENCE_MODE.keyframe_gop if args.fast else 0.0
    if not args.fast:
        return
    args.skip_nonref = args.skip_nonref or FAST_REFERENCE_MODE.skip_nonref
    args.skip_loop_filter = args.skip_loop_filter or FAST_REFERENCE_MODE.skip_loop_filter
    if args.precision == "auto" and args.ray is None:
        from vmatch.embed import resolve_device

        args.precision = fast_mode_precision(resolve_device(args.device))


def cmd_index(args) -> int:
    from vmatch.bank import validate_ref_id
    from vmatch.decode import find_videos

    files, problems = find_videos(args.paths)
    for path, reason in problems:
        _err(f"{path}: {reason}")
    if args.ref_id is not None:
        validate_ref_id(args.ref_id)  # a usage error (exit 2), found before any bank is made
        if len(files) != 1 or len(args.paths) != 1:
            _err("--id can only be used with exactly one video file")
            return EXIT_USAGE
    if not files:
        _err("no video files to index")
        return EXIT_PARTIAL
    _apply_fast_mode(args)
    _check_index_options(args)
    bank = _open_bank(args, create=True, model=args.model)
    try:
        summary = _index_into(bank, files, args)
    finally:
        bank.discard_if_empty()  # a bank this run created and stored nothing in is removed again
    rate = summary.realtime_factor
    print(
        f"indexed {summary.videos} video(s): {summary.frames} frames, {summary.seconds:.1f} s of video "
        f"in {summary.elapsed:.1f} s ({rate:.1f}x real time)"
        + (f"; {len(summary.failed) + len(problems)} input(s) failed" if summary.failed or problems else ""),
        file=sys.stderr,
    )
    if summary.interrupted:
        _err(f"interrupted: the bank holds every video completed before the interruption ({summary.videos})")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if (summary.failed or problems) else EXIT_OK


def _check_index_options(args) -> None:
    """The checks of ``index`` that need no bank, made before one is created (UsageError)."""
    from vmatch.shards import is_sharded

    if args.precision != "auto":  # a precision this machine cannot run
        from vmatch.embed import resolve_device, resolve_precision

        resolve_precision(args.precision, resolve_device(args.device))
    if args.ray is not None and (args.workers is not None or args.skip_nonref or args.keyframes
                                 or args.skip_loop_filter):
        raise UsageError("--workers, --skip-nonref, --skip-loop-filter, --keyframes and --fast are for a local "
                         "run; with --ray the cluster's tasks decode (use --ray-actors for the embedding actors)")
    if args.shard is not None and args.shards is None and not is_sharded(args.bank):
        raise UsageError(f"--shard: {args.bank} is not a sharded bank (create one with --shards N)")
    if args.shard is not None and args.shards is not None and not 0 <= args.shard < args.shards:
        raise UsageError(f"--shard must be within 0..{args.shards - 1}, got {args.shard}")


def _files_of_shard(bank, files: list, args) -> list:
    """With ``--shard I``: the files whose reference belongs to shard I of the sharded bank."""
    if args.shard is None:
        return files
    if not hasattr(bank, "n_shards"):
        raise UsageError(f"--shard: {args.bank} is not a sharded bank (create one with --shards N)")
    if not 0 <= args.shard < bank.n_shards:
        raise UsageError(f"--shard must be within 0..{bank.n_shards - 1}, got {args.shard}")
    from vmatch.shards import shard_of

    return [f for f in files if shard_of(args.ref_id or f.stem, bank.n_shards) == args.shard]


def _lock_for_index(bank, files: list, args) -> None:
    """Take the writer lock of the bank (of a sharded bank: of the shards these files go to) for
    the whole run, before any decoding: wait for another writer as long as it takes, saying so
    once on stderr, or refuse at once with ``--no-wait`` (exit 2). Then check the bank, so that
    a damaged one is refused before anything is written into it."""
    from vmatch.pipeline import lock_for_run

    def tell(holder) -> None:
        print(f"vmatch: waiting for {holder.lock_path}: another process{holder.described()} is writing this "
              "bank; Ctrl-C to stop", file=sys.stderr, flush=True)

    lock_for_run(bank, [args.ref_id or f.stem for f in files], wait=not args.no_wait, on_wait=tell)
    bank.verify()


def _index_into(bank, files: list, args):
    """Index ``files`` into the open ``bank`` as the options say; returns the IndexSummary."""
    from vmatch.decode import probe
    from vmatch.options import DecodeOptions, IndexOptions
    from vmatch.pipeline import index_videos
    from vmatch.threads import ThreadPolicy

    files = _files_of_shard(bank, files, args)
    _lock_for_index(bank, files, args)
    if args.ray is None:
        _prepare_embedder(bank, args)
    total = 0.0
    for f in files:  # cheap header reads, for the progress bar only
        try:
            total += probe(f).duration
        except VmatchError:
            pass
    bar = _Progress(total, "indexing")
    on_error = lambda p, m: bar.write(f"vmatch: error: {m}")  # noqa: E731
    try:
        if args.ray is None:
            decode = DecodeOptions(fps=args.fps, keyframe_gop=args.keyframes, skip_nonref=args.skip_nonref,
                                   skip_loop_filter=args.skip_loop_filter)
            return index_videos(
                bank, files, decode=decode, options=IndexOptions(vpdq=args.vpdq),
                threads=ThreadPolicy(workers=args.workers, cnn_threads=args.threads),
                ref_id=args.ref_id, on_error=on_error, progress=bar,
            )
        with _ray_engine(bank, args) as engine:
            summary = engine.index(
                bank, files, fps=args.fps, ref_id=args.ref_id, on_error=on_error, progress=bar, vpdq=args.vpdq
            )
        if summary.skipped:
            bar.write(f"skipped {len(summary.skipped)} file(s) whose content is already in the bank")
        return summary
    finally:
        bar.close()


def _format_time(t: float) -> str:
    m, s = divmod(t, 60.0)
    return f"{int(m)}:{s:04.1f}"


def _print_table(report, out=None) -> None:
    out = out if out is not None else sys.stdout
    if report.error is not None:
        print(f"{report.query}: ERROR {report.error}", file=out)
        return
    head = f"{report.query} ({report.duration:.1f} s): "
    if not report.matches:
        print(head + f"no match (threshold {report.threshold:.3f})", file=out)
        return
    print(head + f"{len(report.matches)} match(es) (threshold {report.threshold:.3f})", file=out)
    print(f"  {'reference':<32} {'score':>7}  {'query':>17}  {'reference':>17}  {'seg.score':>9}", file=out)
    for m in report.matches:
        for i, s in enumerate(m.segments):
            name = m.reference if i == 0 else ""
            score = f"{m.score:7.3f}" if i == 0 else " " * 7
            print(
                f"  {name:<32} {score}  {_format_time(s.query_start):>7} - {_format_time(s.query_end):<7}"
                f"  {_format_time(s.reference_start):>7} - {_format_time(s.reference_end):<7}  {s.score:9.3f}",
                file=out,
            )


def _emit(report, *, as_json: bool, out=None) -> bool:
    """Print one report (a JSON line or a table) on ``out`` (default stdout); an error also goes to
    stderr. Returns whether it failed."""
    out = out if out is not None else sys.stdout
    if report.error is not None:
        _err(report.error)
    if as_json:
        print(json.dumps(report.to_dict()), file=out, flush=True)
    else:
        _print_table(report, out)
    return report.error is not None


def cmd_match(args) -> int:
    from vmatch.decode import find_videos
    from vmatch.match import MatchParams
    from vmatch.types import MatchReport

    bank = _open_bank(args, create=False)
    failed = 0
    try:
        if args.ray is None:
            _prepare_embedder(bank, args)
        params = MatchParams(threshold=args.threshold)
        from vmatch.match import calibration_for

        threshold = round(float(args.threshold if args.threshold is not None else calibration_for(bank.embedder()).threshold), 6)
        files, problems = find_videos(args.paths)
        reports = []
        for path, reason in problems:
            reports.append((path, reason))
        for f in files:
            reports.append((str(f), None))
        if args.ray is not None:
            return _match_on_ray(bank, args, reports, params, threshold)
        for path, problem in reports:
            if problem is None:
                try:
                    report = bank.match(path, fps=args.fps, params=params, min_score=args.min_score)
                except BankError:
                    raise  # the bank is at fault, not this input: a usage error for the whole command
                except VmatchError as e:
                    report = MatchReport(query=path, duration=0.0, threshold=threshold, error=str(e))
            else:
                report = MatchReport(query=path, duration=0.0, threshold=threshold, error=f"{path}: {problem}")
            failed += _emit(report, as_json=args.json)
    finally:
        bank.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def _match_on_ray(bank, args, inputs: list, params, threshold: float) -> int:
    """``match --ray``: the readable files are decoded and embedded on the cluster; reports are
    printed in input order, exactly as without ``--ray``."""
    from vmatch.types import MatchReport

    files = [p for p, problem in inputs if problem is None]
    failed = 0
    out = sys.stdout
    # stdout carries the reports only (one JSON object per line with --json): whatever Ray prints
    # in this process while it runs (a raylet's warning under load, its start-up lines) goes to
    # stderr.
    with contextlib.redirect_stdout(sys.stderr), _ray_engine(bank, args) as engine:
        results = engine.match(bank, files, fps=args.fps, params=params, min_score=args.min_score)
        for path, problem in inputs:
            if problem is None:
                report = next(results)
            else:
                report = MatchReport(query=path, duration=0.0, threshold=threshold, error=f"{path}: {problem}")
            failed += _emit(report, as_json=args.json, out=out)
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_hash(args) -> int:
    from vmatch.embed import make_embedder, tune_cpu_allocator
    from vmatch.decode import find_videos
    from vmatch.files import output_name
    from vmatch.sample import embed_video
    from vmatch.signals import cnn
    from vmatch.signals.exact import file_hashes
    from vmatch.signals.vpdq import hash_video, write_file

    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out_dir}: cannot create output directory ({e.strerror or e})") from e
    files, problems = find_videos(args.paths)
    for path, reason in problems:
        _err(f"{path}: {reason}")
    tune_cpu_allocator()
    embedder = make_embedder(args.model, device=args.device, batch_size=args.batch_size, threads=args.threads,
                             compile=args.compile, precision=args.precision)
    failed = len(problems)
    for f in files:
        target = None
        try:
            emb = embed_video(f, embedder, fps=args.fps)
            digests = file_hashes(f)
            frames = hash_video(f, device=getattr(embedder, "device", "cpu"))
            target = cnn.write(out_dir / output_name(f.stem, cnn.SUFFIX), emb, model=embedder.spec.to_dict(),
                               fps=args.fps)
            vp_path = write_file(out_dir / output_name(f.stem, ".vpdq.txt"), frames)
        except VmatchError as e:
            if target is not None:  # both signal files of a video, or neither
                target.unlink(missing_ok=True)
            failed += 1
            _err(str(e))
            continue
        print(json.dumps({
            "file": str(f), "duration": round(emb.duration, 3), **digests,
            "cnn": {"path": str(target), "frames": len(emb), "model_id": emb.model_id},
            "vpdq": {"path": str(vp_path), "frames": len(frames)},
        }), flush=True)
    return EXIT_PARTIAL if failed else EXIT_OK


def _read_hash_lines(
    path: str, default_type: str | None, *, with_id: bool
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """See :func:`vmatch.signals.hashlist.read_hash_lines`."""
    from vmatch.signals.hashlist import read_hash_lines

    return read_hash_lines(path, default_type, with_id=with_id)


def _vpdq_id(path: str) -> str:
    from vmatch.signals.hashlist import vpdq_id_from_name

    return vpdq_id_from_name(path)


def _read_vpdq(path: str) -> list:
    from vmatch.signals.vpdq import read_file

    frames = read_file(path)
    if not frames:
        raise UsageError(f"{path}: no vPDQ frames in it")
    return frames


def cmd_import(args) -> int:
    if args.signal_type == "vpdq":
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

    if args.signal_type == "vpdq" and args.out is None:
        raise UsageError("--signal-type vpdq needs --out DIR (one vPDQ file per reference)")
    bank = _open_bank(args, create=False)
    failed = 0
    try:
        if args.signal_type == "vpdq":
            out = Path(args.out)
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"{out}: cannot create output directory ({e.strerror or e})") from e
            for ref in bank.list():
                frames = bank.vpdq_of(ref.reference)
                if not frames:
                    continue
                try:
                    print(write_file(out / output_name(ref.reference, ".vpdq.txt"), frames), flush=True)
                except UsageError as e:  # this reference's file; the others are still written
                    failed += 1
                    _err(str(e))
        else:
            for rid, t, v in bank.hashes(args.signal_type):
                print(f"{t} {v} {rid}")
    finally:
        bank.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def _lookup_hashes(bank, path: str, signal_type: str, threshold: float):
    """One report per hash list: the references holding any of its good lines' hashes (score 1,
    no segment), and a message per malformed line (skipped, like ``import``)."""
    from vmatch.types import Match, MatchReport

    found: dict[str, Match] = {}
    rows, problems = _read_hash_lines(path, signal_type, with_id=False)
    if signal_type == "pdq":
        from vmatch.match import with_pdq_matches
        from vmatch.signals.vpdq import VPDQFrame

        frames = [VPDQFrame(frame_number=i, hex=v, quality=100, timestamp=0.0) for i, (_, v, _) in enumerate(rows)]
        return with_pdq_matches(bank, MatchReport(query=path, duration=0.0, threshold=threshold), frames), problems
    for t, v, _ in rows:
        for ref in bank.lookup_hash(t, v):
            found.setdefault(ref, Match(reference=ref, score=1.0, segments=(), signal_type=t))
    report = MatchReport(query=path, duration=0.0, threshold=threshold, matches=tuple(found[r] for r in sorted(found)))
    return report, problems


def cmd_lookup(args) -> int:
    from vmatch.match import calibration_for, match_embedding, MatchParams
    from vmatch.signals import cnn
    from vmatch.types import MatchReport

    bank = _open_bank(args, create=False)
    failed = 0
    try:
        calibration = calibration_for(bank.embedder())
        threshold = round(float(args.threshold if args.threshold is not None else calibration.threshold), 6)
        params = MatchParams(threshold=args.threshold)
        for path in args.paths:
            try:
                if args.signal_type in ("md5", "sha1", "pdq"):
                    report, problems = _lookup_hashes(bank, path, args.signal_type, threshold)
                    for msg in problems:
                        _err(msg)
                    failed += bool(problems)
                elif args.signal_type == "vpdq":
                    from vmatch.match import with_vpdq_matches

                    frames = _read_vpdq(path)
                    empty = MatchReport(query=path, duration=max(f.timestamp for f in frames), threshold=threshold)
                    report = with_vpdq_matches(bank, empty, frames)
                else:
                    emb, _ = cnn.read(path)
                    cnn.check_model(emb, bank.model_id, source=path, dim=bank.spec.dim)
                    report = match_embedding(
                        bank, emb, calibration=calibration, params=params, min_score=args.min_score, query_name=path
                    )
            except BankError:
                raise
            except VmatchError as e:
                report = MatchReport(query=path, duration=0.0, threshold=threshold, error=str(e))
            failed += _emit(report, as_json=args.json)
    finally:
        bank.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_remove(args) -> int:
    bank = _open_bank(args, create=False)
    try:
        removed = bank.remove(args.ids)
    finally:
        bank.close()
    missing = [i for i in args.ids if i not in removed]
    for i in removed:
        print(f"removed {i}")
    for i in missing:
        _err(f"{i}: no such reference in {args.bank}")
    return EXIT_PARTIAL if missing else EXIT_OK


def cmd_shard(args) -> int:
    from vmatch.bank import Bank
    from vmatch.shards import ShardedBank, split_bank

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
    bank = _open_bank(args, create=False)
    try:
        info = bank.info()
    finally:
        bank.close()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    elif info.get("sharded"):
        print(f"bank:        {info['path']} ({info['shards']} shards)")
        print(f"model:       {info['model_id']}")
        print(f"references:  {info['references']}")
        print(f"frames:      {info['frames']}")
        print(f"video:       {info['seconds']:.1f} s")
        print(f"on disk:     {info['bytes_on_disk'] / 1e6:.2f} MB")
        for sh in info["shard_list"]:
            print(f"  {sh['path']}: {sh['references']} references, {sh['frames']} frames, index {sh['index']}")
    else:
        print(f"bank:        {info['path']}")
        print(f"model:       {info['model_id']}")
        print(f"references:  {info['references']}")
        print(f"frames:      {info['frames']}")
        print(f"video:       {info['seconds']:.1f} s")
        print(f"index:       {info['index_type']} (generation {info['generation']})")
        print(f"on disk:     {info['bytes_on_disk'] / 1e6:.2f} MB")
        print(f"created:     {info['created_at']}")
    return EXIT_OK


def cmd_list(args) -> int:
    bank = _open_bank(args, create=False)
    try:
        refs = bank.list()
    finally:
        bank.close()
    if args.json:
        for r in refs:
            print(json.dumps(r.to_dict()))
    else:
        for r in refs:
            print(f"{r.reference}\t{r.duration:.1f} s\t{r.n_frames} frames\t{r.added_at}\t{r.sha256[:16]}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from vmatch.demo import run_demo

    return run_demo(args, main)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from vmatch.service import ServiceConfig, create_app
    except ImportError as e:
        raise UsageError(f"the service needs FastAPI and uvicorn: pip install 'vmatch[serve]' ({e})") from e
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):  # the other limits: ServiceConfig
        raise UsageError(f"--max-upload-mb must be a finite number > 0, got {args.max_upload_mb}")
    opts = dict(
        bank_root=Path(args.bank_root), device=args.device, fps=args.fps, queue_size=args.queue_size,
        torch_threads=args.threads, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        max_duration=args.max_duration, max_side=args.max_side, max_frames=args.max_frames,
        sync_max_duration=args.sync_max_duration, sync_wait=args.sync_wait, job_timeout=args.job_timeout,
        media_root=Path(args.media_root) if args.media_root else None,
        upload_dir=Path(args.upload_dir) if args.upload_dir else None,
        allow_test_models=args.allow_test_models,
    )
    if args.model is not None:
        opts["default_model"] = args.model
    if args.workers is not None:
        opts["workers"] = args.workers
    config = ServiceConfig(**opts)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def cmd_key(args) -> int:
    from vmatch.service.keys import KeyStore

    store = KeyStore(args.bank_root)
    if args.key_command == "create":
        token, key = store.create(args.name, args.scope)
        print(token)
        print(f"created key {key.key_id} ({key.name}; scopes {','.join(key.scopes)}); it is shown only now: "
              "store it, the server keeps only its SHA-256", file=sys.stderr)
        return EXIT_OK
    if args.key_command == "list":
        for k in store.list():
            if args.json:
                print(json.dumps(k.to_dict()))
            else:
                state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
                print(f"{k.key_id}\t{k.name}\t{','.join(k.scopes)}\t{k.created_at}\t{state}")
        return EXIT_OK
    failed = 0
    for kid in args.key_ids:
        if store.revoke(kid):
            print(f"revoked {kid}")
        else:
            _err(f"{kid}: no active key with this id in {args.bank_root}")
            failed += 1
    return EXIT_PARTIAL if failed else EXIT_OK


COMMANDS = {
    "index": cmd_index,
    "match": cmd_match,
    "remove": cmd_remove,
    "info": cmd_info,
    "list": cmd_list,
    "demo": cmd_demo,
    "hash": cmd_hash,
    "lookup": cmd_lookup,
    "import": cmd_import,
    "export": cmd_export,
    "shard": cmd_shard,
    "serve": cmd_serve,
    "key": cmd_key,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="vmatch: %(levelname)s: %(message)s",
    )
    if hasattr(args, "batch_size") and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if getattr(args, "workers", None) is not None and args.workers < 0:
        parser.error("--workers must be >= 0")
    if hasattr(args, "ray"):  # from here on: None (no Ray), "" (the default cluster) or the address
        args.ray = args.ray_address if args.ray_address is not None else ("" if args.ray else None)
    if hasattr(args, "fps") and args.fps is None:
        from vmatch.options import DEFAULT_FPS, FAST_REFERENCE_MODE

        args.fps = FAST_REFERENCE_MODE.fps if getattr(args, "fast", False) else DEFAULT_FPS
    try:
        return COMMANDS[args.command](args)
    except (BankError, ModelMismatchError, UsageError) as e:
        _err(str(e))
        return EXIT_USAGE
    except VmatchError as e:
        _err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
