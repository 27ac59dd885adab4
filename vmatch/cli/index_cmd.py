"""Command line, ``vmatch index``: reference videos (files, directories) into a bank, locally
(parallel decoding ahead of the CNN) or on a Ray cluster, with the fast reference mode, sharded
banks (``--shards``, ``--shard``), the writer lock and a progress bar over seconds of video.
"""

from __future__ import annotations

import sys

from vmatch.cli.common import (
    _err, _open_bank, _prepare_embedder, _ray_engine, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
)
from vmatch.errors import UsageError, VmatchError


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

