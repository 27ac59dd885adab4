"""Command line: ``vmatch index | match | hash | lookup | import | export | export-model | remove | info | list | shard | demo | serve | key``.

Exit codes: 0 success; 1 some inputs failed (the others were processed); 2 usage errors (bad
flags, missing or corrupted bank, model mismatch); 130 interrupted.

Heavy modules (torch, faiss, av) are imported inside the commands so that ``vmatch --help`` is
instant.

The package: :mod:`.parser` (the options), :mod:`.common` (what the commands share), one module a
group of commands (:mod:`.index_cmd`, :mod:`.match_cmd`, :mod:`.bank_cmd`, :mod:`.serve_cmd`) and
here :func:`main`, which parses, fills the defaults that depend on other options, dispatches
and turns errors into exit codes. Match reports and bank summaries are rendered by
:mod:`vmatch.report`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from vmatch.cli.bank_cmd import cmd_export, cmd_import, cmd_info, cmd_list, cmd_remove, cmd_shard
from vmatch.cli.common import _err, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from vmatch.cli.index_cmd import cmd_index
from vmatch.cli.match_cmd import cmd_hash, cmd_lookup, cmd_match
from vmatch.cli.model_cmd import cmd_export_model
from vmatch.cli.private_cmd import cmd_private
from vmatch.cli.parser import _build_parser, DEFAULT_BANK
from vmatch.cli.serve_cmd import cmd_key, cmd_serve
from vmatch.errors import BankError, ModelMismatchError, UsageError, VmatchError

__all__ = ["main", "DEFAULT_BANK", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "EXIT_INTERRUPTED"]


def cmd_demo(args) -> int:
    from vmatch.demo import run_demo

    return run_demo(args, main)


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
    "export-model": cmd_export_model,
    "private": cmd_private,
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

