"""Command line, what its commands share: exit codes, error lines, opening the bank at ``--bank``,
the CNN and the Ray engine a command runs with, printing a report and reading signal files.

Heavy modules (torch, faiss, av) are imported inside the functions, never here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vmatch.errors import UsageError
from vmatch.report import report_json, report_table

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(msg: str) -> None:
    print(f"vmatch: error: {msg}", file=sys.stderr, flush=True)


def _open_bank(args, *, create: bool, model=None):
    """The bank at ``--bank`` (sharded or not, see :func:`vmatch.shards.open_bank`); ``index
    --shards N`` creates a sharded one."""
    from vmatch.shards import open_bank

    return open_bank(args.bank, create=create, n_shards=getattr(args, "shards", None), model=model,
                     device=getattr(args, "device", "auto"), search_device=getattr(args, "search_device", "cpu"))


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


def _output_dir(path: str) -> Path:
    """The directory ``path``, created if missing (with its parents); UsageError if it cannot be."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot create output directory ({e.strerror or e})") from e
    return out


def _emit(report, *, as_json: bool, out=None) -> bool:
    """Print one report (a JSON line or a table) on ``out`` (default stdout); an error also goes to
    stderr. Returns whether it failed."""
    out = out if out is not None else sys.stdout
    if report.error is not None:
        _err(report.error)
    if as_json:
        print(report_json(report), file=out, flush=True)
    else:
        for line in report_table(report):
            print(line, file=out)
    return report.error is not None


def _read_hash_lines(
    path: str, default_type: str | None, *, with_id: bool
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """See :func:`vmatch.signals.hashlist.read_hash_lines`."""
    from vmatch.signals.hashlist import read_hash_lines

    return read_hash_lines(path, default_type, with_id=with_id)


def _vpdq_id(path: str) -> str:
    from vmatch.signals.registry import VPDQSignal

    return VPDQSignal.ref_id_from_name(path)


def _read_vpdq(path: str) -> list:
    from vmatch.signals.registry import VPDQSignal

    frames = VPDQSignal.read(path)
    if not frames:
        raise UsageError(f"{path}: no vPDQ frames in it")
    return frames

