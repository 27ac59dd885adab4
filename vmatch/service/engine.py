"""The heavy work behind the routes, run as jobs: hash, match, add and look up.

Where it sits: routes (``app``) -> **engine** -> vmatch (sample, signals, match, bank). The
banks and their locks are :mod:`vmatch.service.banks`, the embedders
:mod:`vmatch.service.embedders`, the checks before a job :mod:`vmatch.service.limits`; the
matching itself is :mod:`vmatch.match`'s, as for the CLI (the same report).

Consistency. Heavy work (decode, embed, hash) runs *outside* the bank's lock; the lock is held
only for the short part that reads or writes the bank: a match's searches (CNN, exact hashes,
vPDQ, PDQ) all run under one hold, so a match sees the bank either before or after a curator's
change, never half of it; a change (one SQLite transaction, ``synchronous=FULL``) is committed
before its request is acknowledged, so a crash loses no acknowledged change (the FAISS file is a
cache, rebuilt from the database when stale).

Uploaded media is deleted as soon as it is hashed (embedding, file digests, vPDQ), before the
search, and in a ``finally`` on every error path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmatch.errors import VmatchError
from vmatch.service.banks import BankHandle
from vmatch.service.embedders import Embedders
from vmatch.service.errors import ServiceError, from_vmatch
from vmatch.service.metrics import Metrics
from vmatch.signals.registry import EXACT_SIGNAL_TYPES, CNNSignal, VPDQSignal, get_signal_type, signal_type_names


def _vpdq_frames(text: str, name: str) -> list:
    """The frames of a vPDQ hash file's text, either format recognised as ``read_file`` does
    (:meth:`VPDQSignal.parse <vmatch.signals.registry.VPDQSignal.parse>`); ServiceError 400
    ``invalid_hash_file`` when it holds none. A malformed file raises UsageError naming it."""
    frames = VPDQSignal.parse(text, source=name)
    if not frames:
        raise ServiceError(400, "invalid_hash_file", f"{name}: no vPDQ frames in it")
    return frames


def _embedded(path: Path, embedder, *, fps: float, deadline, metrics: Metrics, **how):
    """The embedding of video ``path`` (the job's deadline checked between frames), counted in
    the frame metrics; ``how``: ``embed_video``'s ``video_id`` and ``keypoints``."""
    from vmatch.sample import embed_video

    emb = embed_video(path, embedder, fps=fps, hash_file=False, progress=deadline.check, **how)
    metrics.frames.inc(by=len(emb))
    return emb


# ---------------------------------------------------------------------------------------- matching
@dataclass
class QuerySignals:
    """What a query upload leaves once it is hashed (the media itself is gone)."""

    embedding: object  # VideoEmbedding
    digests: dict[str, str]
    vpdq_variants: list | None


def _hash_query(handle: BankHandle, embedder, path: Path, name: str, fps: float, deadline, metrics: Metrics):
    from vmatch.signals.exact import file_hashes

    try:
        emb = _embedded(path, embedder, fps=fps, deadline=deadline, metrics=metrics)
        digests = file_hashes(path)
        with handle.held() as bank:
            want_vpdq = bank.has_hashes(signal_type_names(exact=False, stored=True))  # vPDQ, PDQ
        variants = None
        if want_vpdq:
            from vmatch.signals.vpdq import hash_video_dihedral

            deadline.check()
            variants = hash_video_dihedral(path, device=getattr(embedder, "device", "cpu"))
        return QuerySignals(emb, digests, variants)
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e


def match_report(handle: BankHandle, embedder, signals: QuerySignals, name: str, *, threshold, min_score):
    """The CLI's match report of hashed query signals; every search under one hold of the lock."""
    from vmatch.match import calibration_for, match_embedding, MatchParams, with_hash_matches

    params = MatchParams(threshold=threshold)
    # The media is gone: with_hash_matches reads no file when given the digests and the variants
    # (``Path(name)`` only names the query); no vPDQ was hashed if the bank held none then, so a
    # vPDQ or PDQ a curator adds meanwhile matches nothing (no file left to hash).
    variants = signals.vpdq_variants if signals.vpdq_variants is not None else []
    with handle.held() as bank:
        report = match_embedding(bank, signals.embedding, calibration=calibration_for(embedder), params=params,
                                 min_score=min_score, query_name=name)
        report = with_hash_matches(bank, report, Path(name), signals.embedding.duration, digests=signals.digests,
                                   variants=variants)
    return report.to_dict()


def match_upload(handle: BankHandle, embedders: Embedders, path: Path, name: str, *, fps: float, threshold,
                 min_score, deadline, metrics: Metrics, delete: Callable[[], None]) -> dict:
    """Embed and hash the query, delete it, then match (under the bank lock)."""
    try:
        embedder = embedders.get(handle.bank.spec)
        signals = _hash_query(handle, embedder, path, name, fps, deadline, metrics)
    finally:
        delete()
    deadline.check()
    return match_report(handle, embedder, signals, name, threshold=threshold, min_score=min_score)


def lookup_value(handle: BankHandle, embedders: Embedders, signal_type: str, value: str) -> dict:
    """References holding a hash value (md5, sha1: exact; pdq: within 31 bits, any dihedral variant
    of the bank's frames as stored): :func:`vmatch.match.with_value_matches`, as ``vmatch lookup``."""
    from vmatch.match import calibration_for, resolve_threshold, with_value_matches
    from vmatch.signals.registry import list_signal_type
    from vmatch.types import MatchReport

    threshold = resolve_threshold(calibration_for(embedders.get(handle.bank.spec)))
    try:
        v = list_signal_type(signal_type).normalize(value)
    except VmatchError as e:
        raise ServiceError(400, "invalid_hash", str(e)) from e
    report = MatchReport(query=f"{signal_type}:{v}", duration=0.0, threshold=threshold)
    with handle.held() as bank:
        report = with_value_matches(bank, report, signal_type, [v])
    return report.to_dict()


def lookup_file(handle: BankHandle, embedders: Embedders, signal_type: str, data: bytes, name: str, *,
                threshold, min_score, deadline) -> dict:
    """Match a vPDQ hash file (either text format) or a CNN signal file (``.vmsig``) without media.

    Runs as a job. A file that cannot be read (a malformed or oversized ``.vmsig``: cnn.loads
    bounds what it decompresses; the wrong width for the bank's model) is 400 ``invalid_hash_file``
    naming it; a signal of another model 422 ``model_mismatch``."""
    from vmatch.match import calibration_for, match_embedding, MatchParams, resolve_threshold, with_vpdq_matches
    from vmatch.types import MatchReport

    bank = handle.bank
    embedder = embedders.get(bank.spec)
    cal = calibration_for(embedder)
    thr = resolve_threshold(cal, threshold)
    try:
        if get_signal_type(signal_type) is VPDQSignal:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(400, "invalid_hash_file", f"{name}: not a vPDQ hash file (not UTF-8 text)") from None
            frames = _vpdq_frames(text, name)
            deadline.check()
            with handle.held() as bank:
                empty = MatchReport(query=name, duration=max(f.timestamp for f in frames), threshold=thr)
                return with_vpdq_matches(bank, empty, frames).to_dict()
        from vmatch.signals import cnn

        emb = _load_signal(data, name)
        cnn.check_model(emb, bank.model_id, source=name, dim=bank.spec.dim)
        deadline.check()
        with handle.held() as bank:
            return match_embedding(bank, emb, calibration=cal, params=MatchParams(threshold=threshold),
                                   min_score=min_score, query_name=name).to_dict()
    except VmatchError as e:
        err = from_vmatch(e, name=name)
        if err.status == 400 or err.code == "unreadable_video":
            err = ServiceError(400, "invalid_hash_file", err.detail)
        raise err from e


def _load_signal(data: bytes, name: str):
    """The embedding of a ``.vmsig``; cnn.loads raises a UsageError naming the file for anything
    it cannot read (corrupt deflate streams included)."""
    return CNNSignal.parse(data, source=name)[0]


# ---------------------------------------------------------------------------------------- hashing, curating
def hash_upload(embedders: Embedders, spec, path: Path, name: str, *, fps: float, deadline, metrics: Metrics,
                delete: Callable[[], None]) -> dict:
    """Signals of a video without matching: digests, vPDQ lines, a summary of the CNN embedding."""
    from vmatch.signals.exact import file_hashes
    from vmatch.signals.vpdq import hash_video, to_text

    try:
        embedder = embedders.get(spec)
        emb = _embedded(path, embedder, fps=fps, deadline=deadline, metrics=metrics, keypoints="none")
        digests = file_hashes(path)
        deadline.check()
        frames = hash_video(path, device=getattr(embedder, "device", "cpu"))
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e
    finally:
        delete()
    return {
        "file": name, "duration": round(float(emb.duration), 3), **digests,
        CNNSignal.name: {"model_id": emb.model_id, "frames": len(emb), "dim": emb.dim, "fps": fps,
                         "blank_frames": emb.n_blank},
        VPDQSignal.name: {"frames": len(frames), "lines": to_text(frames).splitlines()},
    }


def add_reference(handle: BankHandle, embedders: Embedders, path: Path, name: str, ref_id: str, *, fps: float,
                  vpdq: bool, deadline, metrics: Metrics, delete: Callable[[], None] | None) -> dict:
    """Embed and hash a reference video, delete the upload, then store it (one transaction) with
    :func:`vmatch.index.store_reference`, the indexer's store path; ``name`` is the source name
    stored (the upload's display name, or the path as given under the media root)."""
    from vmatch.index import blank_reason, store_reference
    from vmatch.signals.exact import file_hashes

    try:
        embedder = embedders.get(handle.bank.spec)
        emb = _embedded(path, embedder, fps=fps, deadline=deadline, metrics=metrics, video_id=ref_id,
                        keypoints="reference")
        blank = blank_reason(emb)
        if blank is not None:  # before hashing the file: nothing of it is stored
            raise ServiceError(422, "blank_video", f"{name}: {blank}")
        digests = file_hashes(path)
        frames = None
        if vpdq:
            from vmatch.signals.vpdq import hash_video

            deadline.check()
            frames = hash_video(path, device=getattr(embedder, "device", "cpu"))
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e
    finally:
        if delete is not None:
            delete()
    deadline.check()
    with handle.held() as bank:
        try:
            stored = store_reference(bank, path, emb, digests=digests, fps=fps, vpdq=frames, ref_id=ref_id,
                                     source_name=name)
            bank.save_index()  # keeps the FAISS cache fresh; the database already holds the change
        except VmatchError as e:
            raise from_vmatch(e, name=name) from e
    out = stored.info.to_dict()
    out.update({t: digests[t] for t in EXACT_SIGNAL_TYPES}, vpdq_frames=len(frames) if frames is not None else 0)
    return out


def import_hash_list(handle: BankHandle, text: str | bytes, name: str, signal_type: str | None) -> dict:
    from vmatch.signals.hashlist import parse_hash_lines

    rows, problems = parse_hash_lines(text, signal_type, with_id=True, source=name)
    if not rows:
        raise ServiceError(400, "no_valid_lines",
                           f"{name}: no valid `<signal_type> <value> <id>` line" + (f" ({problems[0]})" if problems else ""))
    with handle.held() as bank:
        try:
            added = bank.add_hashes([(rid, t, v) for t, v, rid in rows])
            bank.save_index()  # the snapshot of the new generation, loaded now rather than by the next match
        except VmatchError as e:
            raise from_vmatch(e) from e
    return {"added": added, "lines": len(rows), "problems": problems}


def import_vpdq(handle: BankHandle, text: str, name: str, ref_id: str) -> dict:
    try:
        frames = _vpdq_frames(text, name)
        with handle.held() as bank:
            n = bank.add_vpdq(ref_id, frames)
            bank.save_index()
    except ServiceError:
        raise
    except VmatchError as e:
        err = from_vmatch(e, name=name)
        raise (ServiceError(400, "invalid_hash_file", err.detail) if err.status in (400, 422) else err) from e
    return {"added": n, "lines": n, "problems": []}
