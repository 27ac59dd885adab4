"""The engine behind the routes: the banks of the bank root, the limits checks, and the heavy work.

Where it sits: routes (``app``) -> **engine** -> vmatch (decode, embed, bank, pipeline).

Consistency. Each bank has one :class:`vmatch.bank.Bank` (one SQLite connection, one in-memory
FAISS snapshot) and one lock. Heavy work (decode, embed, hash) runs *outside* the lock; the lock
is held only for the short part that reads or writes the bank: a match's searches (CNN, exact
hashes, vPDQ, PDQ) all run under one hold, so a match sees the bank either before or after a
curator's change, never half of it; a change (one SQLite transaction, ``synchronous=FULL``) is
committed before its request is acknowledged, so a crash loses no acknowledged change (the FAISS
file is a cache, rebuilt from the database when stale).

Uploaded media is deleted as soon as it is hashed (embedding, file digests, vPDQ), before the
search, and in a ``finally`` on every error path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmatch.bank import DB_NAME, Bank
from vmatch.errors import UsageError, VmatchError
from vmatch.service.config import ServiceConfig
from vmatch.service.errors import ServiceError, from_vmatch
from vmatch.headers import mp4_frame_size
from vmatch.service.metrics import Metrics

log = logging.getLogger(__name__)

BANK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME_RE.match(name):
        raise ServiceError(400, "invalid_bank_name",
                           f"invalid bank name {name!r:.80}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


# ---------------------------------------------------------------------------------------- embedders
def resolve_model(name: str, *, allow_test: bool = True):
    """The ModelSpec of a registry name, or of ``fake-thumbnail`` (the weight-free test embedder of
    :class:`vmatch.embed.FakeEmbedder`, for tests and demos) when ``allow_test``. UsageError names
    the known ones."""
    from vmatch.embed import FAKE_MODEL_NAME, FakeEmbedder
    from vmatch.models import get_model_spec, list_models

    if name == FAKE_MODEL_NAME:
        if allow_test:
            return FakeEmbedder().spec
        raise UsageError(f"model {name!r} is the weight-free test embedder, allowed only on a server started for tests "
                         f"(ServiceConfig.allow_test_models); choose one of {', '.join(list_models())}")
    try:
        return get_model_spec(name)
    except UsageError:
        known = [*list_models(), *([FAKE_MODEL_NAME] if allow_test else [])]
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(known)}") from None


class Embedders:
    """One embedder per model in the process, built on first use and shared by every bank and job."""

    def __init__(self, device: str, threads: int) -> None:
        self.device = device
        self.threads = threads
        self._lock = threading.Lock()
        self._by_model: dict[str, object] = {}

    def get(self, spec):
        from vmatch.embed import make_embedder, tune_cpu_allocator
        from vmatch.match import calibration_for

        if isinstance(spec, str):
            spec = resolve_model(spec)
        with self._lock:
            emb = self._by_model.get(spec.model_id)
            if emb is None:
                tune_cpu_allocator()
                emb = make_embedder(spec, device=self.device, threads=self.threads)
                calibration_for(emb)  # built once here, not raced by the first jobs
                self._by_model[spec.model_id] = emb
            return emb

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._by_model)


# ---------------------------------------------------------------------------------------- banks
@dataclass
class BankHandle:
    name: str
    bank: Bank
    lock: threading.Lock
    deleted: bool = False

    def check_alive(self) -> None:
        if self.deleted:
            raise ServiceError(404, "bank_not_found", f"bank {self.name!r} was deleted")


class Banks:
    """The banks under the bank root, opened once and kept open."""

    def __init__(self, root: Path, device: str) -> None:
        self.root = root
        self.device = device
        self._lock = threading.Lock()
        self._banks: dict[str, BankHandle] = {}
        self.errors: dict[str, str] = {}

    def load_all(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and BANK_NAME_RE.match(d.name) and (d / DB_NAME).exists():
                try:
                    self._open(d.name)
                except VmatchError as e:
                    self.errors[d.name] = str(e)
                    log.error("bank %s cannot be opened: %s", d.name, e)

    def _open(self, name: str) -> BankHandle:
        with self._lock:
            h = self._banks.get(name)
            if h is None:
                bank = Bank.open(self.root / name, create=False, device=self.device)
                h = self._banks[name] = BankHandle(name, bank, threading.Lock())
                self.errors.pop(name, None)
            return h

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._banks)

    def get(self, name: str) -> BankHandle:
        check_bank_name(name)
        with self._lock:
            h = self._banks.get(name)
        if h is not None:
            return h
        if (self.root / name / DB_NAME).exists():  # made by the CLI while the server runs
            try:
                return self._open(name)
            except VmatchError as e:
                raise from_vmatch(e) from e
        raise ServiceError(404, "bank_not_found", f"no bank named {name!r}; create it with POST /banks")

    def create(self, name: str, model: str | None) -> BankHandle:
        check_bank_name(name)
        with self._lock:
            if name in self._banks or (self.root / name).exists():
                raise ServiceError(409, "bank_exists", f"bank {name!r} already exists")
            try:
                bank = Bank.create(self.root / name, model=resolve_model(model) if isinstance(model, str) else model,
                                   device=self.device)
            except VmatchError as e:
                raise from_vmatch(e) from e
            h = self._banks[name] = BankHandle(name, bank, threading.Lock())
            return h

    def delete(self, name: str) -> None:
        h = self.get(name)
        with h.lock:  # waits for the match or write in progress on it
            h.check_alive()
            h.deleted = True
            with self._lock:
                self._banks.pop(name, None)
            h.bank.close()
            shutil.rmtree(self.root / name)

    def close_all(self) -> None:
        with self._lock:
            handles = list(self._banks.values())
            self._banks.clear()
        for h in handles:
            with h.lock:
                with contextlib.suppress(Exception):
                    h.bank.close()


# ---------------------------------------------------------------------------------------- limits
def _declared_frame_size(path: Path) -> tuple[int, int] | None:
    """The frame size the file's header declares, without decoding and without FFmpeg's log.

    FFmpeg's stream parameters when it accepts them; else (FFmpeg opened the stream with 0x0,
    having refused an impossible size) the size an MP4/QuickTime sample description declares."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if c.streams.video:
                cc = c.streams.video[0].codec_context
                if cc.width and cc.height:
                    return int(cc.width), int(cc.height)
    except Exception:  # not openable: probe() names the problem
        return None
    return mp4_frame_size(path)


def _too_large(name: str, size: tuple[int, int], limit: int, what: str = "declares") -> ServiceError:
    return ServiceError(422, "resolution_too_large",
                        f"{name}: the video {what} {size[0]}x{size[1]} frames; the limit is {limit} px per side")


def check_video(path: Path, name: str, config: ServiceConfig):
    """Cheap checks before any heavy work: a readable video (not a still image) within the limits
    of duration, frame size and frame count. Returns its :class:`~vmatch.types.VideoInfo`.

    The declared frame size is checked before :func:`vmatch.decode.probe` decodes a frame; probe
    refuses still images, impossible sizes and empty containers (mapped by ``from_vmatch``).
    Nothing here reads FFmpeg's log (see ``app.create_app``: its callback deadlocks decoding).

    Raises ServiceError 422 naming the problem.
    """
    from vmatch.decode import probe

    declared = _declared_frame_size(path)
    if declared is not None and max(declared) > config.max_side:
        raise _too_large(name, declared, config.max_side)
    try:
        info = probe(path)
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e
    if max(info.width, info.height) > config.max_side:
        raise _too_large(name, (info.width, info.height), config.max_side, "has")
    if info.duration > config.max_duration:
        raise ServiceError(422, "video_too_long",
                           f"{name}: lasts {info.duration:.1f} s; the limit is {config.max_duration:g} s")
    frames = info.n_frames if info.n_frames else (info.duration * info.fps if info.fps else None)
    if frames is not None and frames > config.max_frames:
        raise ServiceError(422, "too_many_frames",
                           f"{name}: holds about {int(frames)} frames; the limit is {config.max_frames}")
    return info


def resolve_media_path(config: ServiceConfig, text: str) -> Path:
    """A server-side path inside ``config.media_root`` (symlinks resolved), else ServiceError
    400 (not a usable path: a symlink loop, a name or path too long for the file system), 403
    (outside the root) or 404 (no such file). Every answer names the path, cut to 200 characters."""
    if config.media_root is None:
        raise ServiceError(403, "paths_disabled",
                           "adding references by server-side path is disabled; start the server with --media-root DIR")
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ServiceError(400, "invalid_path", "path must be a non-empty string without NUL characters")
    shown = f"{text!r:.200}"
    root = config.media_root.resolve()
    try:
        p = Path(text)
        p = (p if p.is_absolute() else root / p).resolve()
        if p != root and root not in p.parents:
            raise ServiceError(403, "path_outside_root", f"{shown} is outside the allowed media root")
        is_file = p.is_file()
    except (OSError, RuntimeError) as e:  # ELOOP, ENAMETOOLONG, EACCES...; RuntimeError: a loop (Python < 3.13)
        raise ServiceError(400, "invalid_path", f"{shown}: not a usable path ({_path_problem(e)})") from None
    if not is_file:
        raise ServiceError(404, "file_not_found", f"{shown}: no such file under the media root")
    return p


def _path_problem(e: OSError | RuntimeError) -> str:
    """Why a path cannot be used, in words (never the resolved server path)."""
    code = getattr(e, "errno", None)
    if isinstance(e, RuntimeError) or code == errno.ELOOP:
        return "a symbolic link loop"
    reasons = {errno.ENAMETOOLONG: "a name or the whole path is too long", errno.EACCES: "permission denied",
               errno.ENOTDIR: "a component is not a directory"}
    return reasons.get(code, getattr(e, "strerror", None) or type(e).__name__)


# ---------------------------------------------------------------------------------------- heavy work
@dataclass
class QuerySignals:
    """What a query upload leaves once it is hashed (the media itself is gone)."""

    embedding: object  # VideoEmbedding
    digests: dict[str, str]
    vpdq_variants: list | None


def _hash_query(handle: BankHandle, embedder, path: Path, name: str, fps: float, deadline, metrics: Metrics):
    from vmatch.sample import embed_video
    from vmatch.signals.exact import file_hashes

    try:
        emb = embed_video(path, embedder, fps=fps, hash_file=False, progress=deadline.check)
        metrics.frames.inc(by=len(emb))
        digests = file_hashes(path)
        with handle.lock:
            handle.check_alive()
            want_vpdq = handle.bank.has_hashes(("vpdq", "pdq"))
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
    from vmatch.signals.exact import EXACT_SIGNAL_TYPES
    from vmatch.match import (
        calibration_for,
        match_embedding,
        MatchParams,
        with_pdq_matches,
        with_vpdq_matches,
    )
    from vmatch.types import Match, Segment

    bank = handle.bank
    params = MatchParams(threshold=threshold)
    with handle.lock:
        handle.check_alive()
        report = match_embedding(bank, signals.embedding, calibration=calibration_for(embedder), params=params,
                                 min_score=min_score, query_name=name)
        dur = signals.embedding.duration
        whole = (Segment(0.0, dur, 0.0, dur, 1.0),)
        exact = [Match(reference=ref, score=1.0, segments=whole, signal_type=t)
                 for t in EXACT_SIGNAL_TYPES for ref in bank.lookup_hash(t, signals.digests[t])]
        if exact:
            ms = sorted([*exact, *report.matches], key=lambda m: (-m.score, m.reference, m.signal_type))
            report = dataclasses.replace(report, matches=tuple(ms))
        if signals.vpdq_variants is not None:
            if bank.has_hashes(("vpdq",)):
                report = with_vpdq_matches(bank, report, *signals.vpdq_variants)
            if bank.has_hashes(("pdq",)):
                report = with_pdq_matches(bank, report, [f for v in signals.vpdq_variants for f in v])
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


def add_reference(handle: BankHandle, embedders: Embedders, path: Path, name: str, ref_id: str, *, fps: float,
                  vpdq: bool, deadline, metrics: Metrics, delete: Callable[[], None] | None) -> dict:
    """Embed and hash a reference video, delete the upload, then store it (one transaction)."""
    from vmatch.sample import embed_video
    from vmatch.signals.exact import file_hashes

    bank = handle.bank
    try:
        embedder = embedders.get(bank.spec)
        emb = embed_video(path, embedder, fps=fps, video_id=ref_id, hash_file=False, progress=deadline.check,
                          keypoints="reference")
        metrics.frames.inc(by=len(emb))
        if len(emb) == 0:
            raise ServiceError(422, "blank_video",
                               f"{name}: all {emb.n_blank} sampled frames are blank (solid colour); nothing to index")
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
    emb = dataclasses.replace(emb, sha256=digests["sha256"])
    with handle.lock:
        handle.check_alive()
        try:
            info = bank.add_embedding(emb, ref_id=ref_id, source_name=name, extra={"fps": fps, "n_blank": emb.n_blank},
                                      hashes={"md5": digests["md5"], "sha1": digests["sha1"]}, vpdq=frames)
            bank.save_index()  # keeps the FAISS cache fresh; the database already holds the change
        except VmatchError as e:
            raise from_vmatch(e, name=name) from e
    out = info.to_dict()
    out.update(md5=digests["md5"], sha1=digests["sha1"], vpdq_frames=len(frames) if frames is not None else 0)
    return out


def hash_upload(embedders: Embedders, spec, path: Path, name: str, *, fps: float, deadline, metrics: Metrics,
                delete: Callable[[], None]) -> dict:
    """Signals of a video without matching: digests, vPDQ lines, a summary of the CNN embedding."""
    from vmatch.sample import embed_video
    from vmatch.signals.exact import file_hashes
    from vmatch.signals.vpdq import hash_video, to_text

    try:
        embedder = embedders.get(spec)
        emb = embed_video(path, embedder, fps=fps, hash_file=False, progress=deadline.check, keypoints="none")
        metrics.frames.inc(by=len(emb))
        digests = file_hashes(path)
        deadline.check()
        frames = hash_video(path, device=getattr(embedder, "device", "cpu"))
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e
    finally:
        delete()
    return {
        "file": name, "duration": round(float(emb.duration), 3), **digests,
        "cnn": {"model_id": emb.model_id, "frames": len(emb), "dim": emb.dim, "fps": fps, "blank_frames": emb.n_blank},
        "vpdq": {"frames": len(frames), "lines": to_text(frames).splitlines()},
    }


def lookup_value(handle: BankHandle, embedders: Embedders, signal_type: str, value: str) -> dict:
    """References holding a hash value (md5, sha1: exact; pdq: within 31 bits, any dihedral variant
    of the bank's frames as stored)."""
    from vmatch.bank import normalize_pdq
    from vmatch.match import calibration_for, with_pdq_matches
    from vmatch.signals.exact import normalize_hex_digest
    from vmatch.signals.vpdq import VPDQFrame
    from vmatch.types import Match, MatchReport

    bank = handle.bank
    threshold = round(float(calibration_for(embedders.get(bank.spec)).threshold), 6)
    try:
        v = normalize_pdq(value) if signal_type == "pdq" else normalize_hex_digest(value, signal_type)
    except VmatchError as e:
        raise ServiceError(400, "invalid_hash", str(e)) from e
    report = MatchReport(query=f"{signal_type}:{v}", duration=0.0, threshold=threshold)
    with handle.lock:
        handle.check_alive()
        if signal_type == "pdq":
            report = with_pdq_matches(bank, report, [VPDQFrame(frame_number=0, hex=v, quality=100, timestamp=0.0)])
        else:
            ms = tuple(Match(reference=r, score=1.0, segments=(), signal_type=signal_type)
                       for r in bank.lookup_hash(signal_type, v))
            report = dataclasses.replace(report, matches=ms)
    return report.to_dict()


def lookup_file(handle: BankHandle, embedders: Embedders, signal_type: str, data: bytes, name: str, *,
                threshold, min_score, deadline) -> dict:
    """Match a vPDQ hash file (either text format) or a CNN signal file (``.vmsig``) without media.

    Runs as a job. A file that cannot be read (a malformed or oversized ``.vmsig``: cnn.loads
    bounds what it decompresses; the wrong width for the bank's model) is 400 ``invalid_hash_file``
    naming it; a signal of another model 422 ``model_mismatch``."""
    from vmatch.match import calibration_for, match_embedding, MatchParams, with_vpdq_matches
    from vmatch.types import MatchReport

    bank = handle.bank
    embedder = embedders.get(bank.spec)
    cal = calibration_for(embedder)
    thr = round(float(threshold if threshold is not None else cal.threshold), 6)
    try:
        if signal_type == "vpdq":
            from vmatch.signals.vpdq import from_signal_str, from_text

            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(400, "invalid_hash_file", f"{name}: not a vPDQ hash file (not UTF-8 text)") from None
            frames = from_signal_str(text, source=name) if text.lstrip().startswith("[") else from_text(text, source=name)
            if not frames:
                raise ServiceError(400, "invalid_hash_file", f"{name}: no vPDQ frames in it")
            deadline.check()
            with handle.lock:
                handle.check_alive()
                empty = MatchReport(query=name, duration=max(f.timestamp for f in frames), threshold=thr)
                return with_vpdq_matches(bank, empty, frames).to_dict()
        from vmatch.signals import cnn

        emb = _load_signal(data, name)
        cnn.check_model(emb, bank.model_id, source=name, dim=bank.spec.dim)
        deadline.check()
        with handle.lock:
            handle.check_alive()
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
    from vmatch.signals import cnn

    return cnn.loads(data, source=name)[0]


def import_hash_list(handle: BankHandle, text: str | bytes, name: str, signal_type: str | None) -> dict:
    from vmatch.signals.hashlist import parse_hash_lines

    rows, problems = parse_hash_lines(text, signal_type, with_id=True, source=name)
    if not rows:
        raise ServiceError(400, "no_valid_lines",
                           f"{name}: no valid `<signal_type> <value> <id>` line" + (f" ({problems[0]})" if problems else ""))
    with handle.lock:
        handle.check_alive()
        try:
            added = handle.bank.add_hashes([(rid, t, v) for t, v, rid in rows])
            handle.bank.save_index()  # the snapshot of the new generation, loaded now rather than by the next match
        except VmatchError as e:
            raise from_vmatch(e) from e
    return {"added": added, "lines": len(rows), "problems": problems}


def import_vpdq(handle: BankHandle, text: str, name: str, ref_id: str) -> dict:
    from vmatch.signals.vpdq import from_signal_str, from_text

    try:
        frames = from_signal_str(text, source=name) if text.lstrip().startswith("[") else from_text(text, source=name)
        if not frames:
            raise ServiceError(400, "invalid_hash_file", f"{name}: no vPDQ frames in it")
        with handle.lock:
            handle.check_alive()
            n = handle.bank.add_vpdq(ref_id, frames)
            handle.bank.save_index()
    except ServiceError:
        raise
    except VmatchError as e:
        err = from_vmatch(e, name=name)
        raise (ServiceError(400, "invalid_hash_file", err.detail) if err.status in (400, 422) else err) from e
    return {"added": n, "lines": n, "problems": []}
