"""``vmatch demo``: the whole job on videos generated on the spot, with the planted truth beside it.

1. writes three unrelated reference clips and two queries (one holds an edited copy of seconds
   5-13 of ``ref_1``: cropped, brightened, re-timed to 30 fps, between unrelated footage; the
   other copies nothing) with :func:`vmatch.synth.make_demo_set`;
2. ``vmatch index`` the references into a new bank;
3. ``vmatch match`` both queries, as a table and as the JSON lines of the CLI contract;
4. compares what was found with what was planted, and exits 0 only if the copy was found
   (right reference, both intervals within one sampling step) and the clean query matched nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def run_demo(args, cli_main: Callable[[Sequence[str]], int]) -> int:
    """Run the demo with ``args`` (the parsed ``vmatch demo`` options), driving ``cli_main``.

    ``cli_main`` is the CLI's entry point (``vmatch.cli.main``), passed by the CLI itself: the demo
    runs the commands a user would type, and the CLI, the layer above, owns them.
    """
    from vmatch.synth import make_demo_set

    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vmatch-demo-")))
        bank = work / "bank"
        if (bank / "bank.sqlite").exists():
            print(f"vmatch: error: {bank} already holds a bank; use another --workdir", file=sys.stderr)
            return 2
        print(f"[1/3] generating demo videos in {work}", flush=True)
        demo = make_demo_set(work / "videos")
        t = demo.truth
        print(f"      references: {', '.join(p.name for p in demo.references)}")
        print(
            f"      planted: {t.query_path.name} {t.query_start:.1f}-{t.query_end:.1f} s = "
            f"{t.reference} {t.reference_start:.1f}-{t.reference_end:.1f} s ({', '.join(t.edits)})"
        )
        common = ["--device", args.device, "--fps", str(args.fps), "--batch-size", str(args.batch_size)]
        if args.threads:
            common += ["--threads", str(args.threads)]
        print(f"[2/3] vmatch index --bank {bank} {demo.directory / 'references'}", flush=True)
        rc = cli_main(["index", "--bank", str(bank), *common, str(demo.directory / "references")])
        if rc != 0:
            return rc
        queries = [str(demo.query), str(demo.negative_query)]
        print(f"[3/3] vmatch match --bank {bank} <queries>", flush=True)
        rc = cli_main(["match", "--bank", str(bank), *common, *queries])
        if rc != 0:
            return rc
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli_main(["match", "--bank", str(bank), "--json", *common, *queries])
        lines = buf.getvalue().splitlines()
        print("JSON (vmatch match --json):")
        for line in lines:
            print("  " + line)
        reports = [json.loads(line) for line in lines]
    copy_rep, clean_rep = reports
    step = 1.0 / args.fps
    ok = False
    if copy_rep.get("matches"):
        best = copy_rep["matches"][0]
        seg = best["segments"][0]
        ok = (
            best["reference"] == t.reference
            and abs(seg["query_start"] - t.query_start) <= step + 1e-6
            and abs(seg["query_end"] - t.query_end) <= step + 1e-6
            and abs(seg["reference_start"] - t.reference_start) <= step + 1e-6
            and abs(seg["reference_end"] - t.reference_end) <= step + 1e-6
        )
    clean_ok = not clean_rep.get("matches")
    print(
        ("OK: " if ok else "MISSED: ")
        + f"copy of {t.reference} {'found' if ok else 'not found'} within one sampling step; "
        + ("clean query matched nothing." if clean_ok else "clean query matched something (false match).")
    )
    return 0 if ok and clean_ok else 1
