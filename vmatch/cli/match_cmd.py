"""Command line, matching: ``vmatch match`` (query videos, locally or on Ray), ``vmatch hash`` (a
video's signals written out, to match without the media) and ``vmatch lookup`` (those signals, or
hash lists, matched against a bank). Every report is printed by :func:`vmatch.cli.common._emit`.
"""

from __future__ import annotations

import contextlib
import json
import sys

from vmatch.cli.common import (
    _emit, _err, _open_bank, _output_dir, _prepare_embedder, _ray_engine, _read_hash_lines, _read_vpdq, EXIT_OK,
    EXIT_PARTIAL,
)
from vmatch.errors import BankError, VmatchError


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
        from vmatch.match import calibration_for, resolve_threshold

        # The calibration only when no --threshold is given (with --ray, no embedder is loaded otherwise).
        threshold = resolve_threshold(None if args.threshold is not None else calibration_for(bank.embedder()),
                                      args.threshold)
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
    from vmatch.signals.registry import CNNSignal, VPDQSignal
    from vmatch.signals.vpdq import hash_video, write_file

    out_dir = _output_dir(args.out)
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
            target = cnn.write(out_dir / output_name(f.stem, CNNSignal.FILE_SUFFIX), emb,
                               model=embedder.spec.to_dict(), fps=args.fps)
            vp_path = write_file(out_dir / output_name(f.stem, VPDQSignal.FILE_SUFFIX), frames)
        except VmatchError as e:
            if target is not None:  # both signal files of a video, or neither
                target.unlink(missing_ok=True)
            failed += 1
            _err(str(e))
            continue
        print(json.dumps({
            "file": str(f), "duration": round(emb.duration, 3), **digests,
            CNNSignal.name: {"path": str(target), "frames": len(emb), "model_id": emb.model_id},
            VPDQSignal.name: {"path": str(vp_path), "frames": len(frames)},
        }), flush=True)
    return EXIT_PARTIAL if failed else EXIT_OK


def _lookup_hashes(bank, path: str, signal_type: str, threshold: float):
    """One report per hash list: the references holding any of its good lines' hashes
    (:func:`vmatch.match.with_value_matches`), and a message per malformed line (skipped, like
    ``import``)."""
    from vmatch.match import with_value_matches
    from vmatch.types import MatchReport

    rows, problems = _read_hash_lines(path, signal_type, with_id=False)
    report = MatchReport(query=path, duration=0.0, threshold=threshold)
    return with_value_matches(bank, report, signal_type, [v for _, v, _ in rows]), problems


def cmd_lookup(args) -> int:
    from vmatch.match import calibration_for, match_embedding, MatchParams, resolve_threshold
    from vmatch.signals import cnn
    from vmatch.signals.registry import CNNSignal, VPDQSignal, get_signal_type
    from vmatch.types import MatchReport

    signal_type = get_signal_type(args.signal_type)
    bank = _open_bank(args, create=False)
    failed = 0
    try:
        calibration = calibration_for(bank.embedder())
        threshold = resolve_threshold(calibration, args.threshold)
        params = MatchParams(threshold=args.threshold)
        for path in args.paths:
            try:
                if signal_type.in_lists:
                    report, problems = _lookup_hashes(bank, path, signal_type.name, threshold)
                    for msg in problems:
                        _err(msg)
                    failed += bool(problems)
                elif signal_type is VPDQSignal:
                    from vmatch.match import with_vpdq_matches

                    frames = _read_vpdq(path)
                    empty = MatchReport(query=path, duration=max(f.timestamp for f in frames), threshold=threshold)
                    report = with_vpdq_matches(bank, empty, frames)
                else:
                    emb, _ = CNNSignal.read(path)
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

