"""Command line, its grammar: the ``argparse`` parser of every ``vmatch`` command and the
checked number types of its options (frame rates, score bounds, TCP ports).

Imports nothing heavy: ``vmatch --help`` and ``vmatch COMMAND --help`` stay instant.
"""

from __future__ import annotations

import argparse
import math

from vmatch import __version__
from vmatch.signals.registry import LOOKUP_SIGNAL_TYPES, STORED_SIGNAL_TYPES, CNNSignal

DEFAULT_BANK = "index"


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
        "vmatch-cnn-signal v2, with the frames' keypoints for verification) to OUT/<name>.vmsig and its vPDQ hash to OUT/<name>.vpdq.txt, and print "
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
        default=CNNSignal.name,
        choices=list(LOOKUP_SIGNAL_TYPES),
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
    pim.add_argument("--signal-type", default=None, choices=list(STORED_SIGNAL_TYPES),
                     help="vpdq: FILE is one video's vPDQ hash file; its id is --id or the file name")
    pim.add_argument("--id", dest="ref_id", default=None, help="reference id of a vPDQ file")

    pex = sub.add_parser("export", parents=[common], help="export a bank's hashes (`<signal_type> <value> <id>` lines)")
    pex.add_argument("--signal-type", default=None, choices=list(STORED_SIGNAL_TYPES))
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

    pem = sub.add_parser(
        "export-model",
        help="write the embed stage as one ONNX file (for clients without torch)",
        description="Export a model's whole embed stage (uint8 RGB frames in, the model's L2-normalised "
        "embeddings out: scaling, network, pooling, projection) as one ONNX file that onnxruntime runs "
        "without torch (vmatch.onnx_embed.OnnxEmbedder; signals carry the model's model_id and match its "
        "banks). Needs the onnx package: pip install 'vmatch[onnx]'. Prints one JSON line describing the file.",
    )
    pem.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    pem.add_argument("--model", default=None, help="model (default: effnet-lite0-gem)")

    ppv = sub.add_parser(
        "private", help="private matching (PSI): publish a blinded table, make vouchers, match them",
        description="The private mode for end-to-end encrypted services (vmatch.private): the server learns "
        "only the videos of which at least t frames match, the device learns nothing. Needs "
        "pip install 'vmatch[private]'.",
    )
    pvsub = ppv.add_subparsers(dest="private_command", metavar="ACTION")
    pvsub.required = True
    pvp = pvsub.add_parser("publish", parents=[common], help="build and keep the next blinded table of a bank")
    pvp.add_argument("--out", default=None, metavar="FILE", help="also write the table here (for devices)")
    pvp.add_argument("--threshold", type=int, default=3, metavar="T", help="matching frames that open a video (default 3)")
    pvp.add_argument("--tables", type=int, default=8, help="keys per frame (LSH tables, default 8)")
    pvp.add_argument("--bits", type=int, default=20, help="bits per key (default 20)")
    pvp.add_argument("--probes", type=int, default=1, help="device multi-probe keys per table (default 1)")
    pvv = pvsub.add_parser("voucher", parents=[embed_opts], help="make the voucher bundle of videos (device side)")
    pvv.add_argument("paths", nargs="+", metavar="VIDEO", help="videos, or .vmsig signals from `vmatch hash`")
    pvv.add_argument("--table", required=True, metavar="FILE", help="the published table (.vmpt)")
    pvv.add_argument("--commitment", default=None, metavar="HEX", help="refuse a table whose SHA-256 is not this")
    pvv.add_argument("--out", default=".", metavar="DIR", help="where to write <name>.vmpv (default: .)")
    pvv.add_argument("--onnx", default=None, metavar="MODEL", help="embed with this exported ONNX model (no torch)")
    pvv.add_argument("--model", default=None, help="model (default: the table's)")
    pvm = pvsub.add_parser("match", parents=[common], help="open and match received voucher bundles (server side)")
    pvm.add_argument("paths", nargs="+", metavar="FILE")
    pvm.add_argument("--json", action="store_true", help="one JSON object per bundle per line")

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

