"""Matching: query signals to a :class:`MatchReport`.

:func:`match_embedding` matches an embedded query against a bank (frame search, score
normalisation, temporal alignment); :func:`with_hash_matches` adds the hash signals the bank holds
(exact MD5/SHA-1, vPDQ, image PDQ); :func:`match_query` does both for a file or an embedding (what
``Bank.match`` calls). The decision threshold comes from :class:`MatchParams` or the model's
calibration (:func:`calibration_for`).

Score normalisation (in the manner of the VSC 2022 baseline, CSLS-style): every query frame gets
a bias ``-beta * sim(query frame, nearest background frame)``, where the background is a set of
frames from videos that are never references (the model's artifact, from the training split of
the public clips, plus generated solid-colour, gradient and text-slide frames). A query frame that
looks like everything (black, blank, a slide) is as close to the background as to any reference,
so its normalised similarity is ~0 and it cannot produce a match; a real copy stands far above.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vmatch.align import AlignParams, align_pair
from vmatch.errors import ModelError, UsageError
from vmatch.options import DEFAULT_FPS
from vmatch.sample import embed_video
from vmatch.signals.registry import EXACT_SIGNAL_TYPES, PDQSignal, VPDQSignal, list_signal_type
from vmatch.types import Match, MatchReport, Segment, VideoEmbedding
from vmatch.verify import VerifyParams, verify, weight

log = logging.getLogger(__name__)

#: Candidates whose CNN score is below this are not verified (their fused score is 0): the
#: fused score never exceeds the CNN score, and a pair this weak is no copy at any threshold.
VERIFY_MIN_CNN = 0.05


@dataclass(frozen=True)
class MatchParams:
    """Parameters of matching.

    Attributes:
        k: reference frames retrieved per query frame in the frame-level search.
        max_candidates: references aligned per query at most (best frame hits first).
        beta: weight of the background (score normalisation) term.
        threshold: global decision threshold on the pair score; None = the model's calibration.
        align: temporal alignment parameters.
        verify: verify each candidate pair with local features (:mod:`vmatch.verify`) and report
            the fused score; False reports the CNN score alone (unverified: look-alikes of a
            reference's style, place or source score as high as its copies — for experiments and
            embeddings made without keypoints, never for decisions).
        verification: parameters of the verification and of the fused score.
    """

    k: int = 32
    max_candidates: int = 50
    beta: float = 1.0
    threshold: float | None = None
    align: AlignParams = field(default_factory=AlignParams)
    verify: bool = True
    verification: VerifyParams = field(default_factory=VerifyParams)

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_candidates < 1:
            raise UsageError("MatchParams: k and max_candidates must be >= 1")
        if not (0.0 <= self.beta <= 4.0):
            raise UsageError("MatchParams: beta must be within [0, 4]")


# ---------------------------------------------------------------------- background & calibration
class ModelCalibration:
    """Background frames and default threshold of a model (per embedder, built once)."""

    def __init__(self, background: np.ndarray, threshold: float) -> None:
        self.background = np.ascontiguousarray(background, dtype=np.float32)
        self.threshold = float(threshold)

    def background_similarity(self, features: np.ndarray) -> np.ndarray:
        """[N] similarity of each row of ``features`` to its nearest background frame."""
        if self.background.shape[0] == 0 or features.shape[0] == 0:
            return np.zeros(features.shape[0], np.float32)
        out = np.empty(features.shape[0], np.float32)
        for a in range(0, features.shape[0], 4096):
            out[a : a + 4096] = (features[a : a + 4096] @ self.background.T).max(axis=1)
        return out


def calibration_for(embedder) -> ModelCalibration:
    """The calibration of ``embedder``'s model: from its artifact when it has one, else synthetic.

    The synthetic background (solid colours, gradients, text slides, noise) is generated and
    embedded on the fly; it is what catches frames that "match everything".
    """
    cached = getattr(embedder, "_vmatch_calibration", None)
    if cached is not None:
        return cached
    from vmatch.models import FIT_PROJECTION_COMMAND, load_calibration, projection_path

    models_dir = getattr(embedder, "models_dir", None)
    cal = load_calibration(embedder.spec, models_dir=models_dir)
    if cal is None and embedder.spec.projection:
        # A bank model without its calibration has no meaningful threshold: refuse, never guess.
        raise ModelError(
            f"{projection_path(embedder.spec, models_dir=models_dir)}: holds no calibration (background set and "
            f"threshold) for model {embedder.spec.name!r}; refit it with `{FIT_PROJECTION_COMMAND}`"
        )
    if cal is None:  # a model without projection (the fake test embedder, the raw fitting model)
        from vmatch.synth import uninformative_frames

        frames = uninformative_frames(tuple(embedder.spec.input_size))
        bg = embedder.embed(frames)
        cal = ModelCalibration(bg, DEFAULT_UNCALIBRATED_THRESHOLD)
    else:
        cal = ModelCalibration(cal["background"], cal["threshold"])
    try:
        embedder._vmatch_calibration = cal
    except AttributeError:
        pass
    return cal


#: Threshold used with a model that has no projection artifact, hence no calibration (the fake
#: test embedder, the raw fitting model); a model with a projection must carry its calibration.
DEFAULT_UNCALIBRATED_THRESHOLD = 0.15


def resolve_threshold(calibration: ModelCalibration | None, threshold: float | None = None) -> float:
    """The decision threshold a report states: ``threshold`` when given, else the model's
    ``calibration`` threshold (read only then: None is allowed with a given ``threshold``),
    rounded to 6 decimals. The one place the threshold is resolved (API, CLI, service)."""
    return round(float(threshold if threshold is not None else calibration.threshold), 6)


# ---------------------------------------------------------------------- matching
def match_embedding(
    bank,
    query: VideoEmbedding,
    *,
    calibration: ModelCalibration,
    params: MatchParams = MatchParams(),
    min_score: float | None = None,
    query_name: str | None = None,
) -> MatchReport:
    """Match one embedded query against ``bank``: frame search, normalisation, alignment."""
    if query.model_id != bank.model_id:
        from vmatch.errors import ModelMismatchError

        raise ModelMismatchError(
            f"{query_name or query.video_id}: query embedded with model {query.model_id}, "
            f"bank {bank.path} holds model {bank.model_id}"
        )
    threshold = resolve_threshold(calibration, params.threshold)
    floor = threshold if min_score is None else float(min_score)
    name = query_name if query_name is not None else query.video_id
    if len(query) == 0:
        return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=())
    snap = bank.snapshot()
    q = query.features
    bias = params.beta * calibration.background_similarity(q)
    hits = bank.search(q, params.k, snapshot=snap)  # one generation for the whole match
    if hits.ref_index.size == 0:
        return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=())
    adj = hits.similarity - bias[:, None]
    ok = (hits.ref_index >= 0) & (adj > params.align.hit_threshold)
    best_by_ref: dict[int, float] = {}
    for r, s in zip(hits.ref_index[ok].tolist(), adj[ok].tolist()):
        if s > best_by_ref.get(r, -np.inf):
            best_by_ref[r] = s
    cands = sorted(best_by_ref, key=lambda r: -best_by_ref[r])[: params.max_candidates]
    if params.verify and query.local is None:
        raise UsageError(
            f"{name}: the query has no local features, so its matches cannot be verified; embed it with "
            "keypoints='query' (signal files: hash the video again with this vmatch), or pass "
            "MatchParams(verify=False) for unverified CNN scores"
        )
    matches: list[Match] = []
    for r in cands:
        ref_vecs = bank.reference_vectors(r, snapshot=snap)
        sim = q @ ref_vecs.T - bias[:, None]
        segs = align_pair(sim, query.timestamps, snap.timestamps[r], params.align)
        if not segs:
            continue
        cnn = float(segs[0].score)
        details: dict[str, float] = {}
        w = 1.0
        if params.verify:
            w, details = _verification(bank, snap, r, query, segs[0], cnn, floor, params.verification)
        score = cnn * w
        if score >= floor:
            # Segments below the floor are coincidences around the copy, not copies: not reported.
            kept = tuple(dataclasses.replace(s, score=float(s.score * w)) for s in segs if s.score * w >= floor)
            matches.append(Match(reference=snap.ref_ids[r], score=float(score), segments=kept, details=details))
    matches.sort(key=lambda m: (-m.score, m.reference))
    return MatchReport(query=name, duration=query.duration, threshold=threshold, matches=tuple(matches))


def _verification(bank, snap, r: int, query: VideoEmbedding, seg: Segment, cnn: float, floor: float,
                  params: VerifyParams) -> tuple[float, dict[str, float]]:
    """(weight, report details) of candidate reference ``r`` whose best segment is ``seg``."""
    unverified = {"cnn_score": cnn, "content_inliers": 0.0, "verified_frames": 0.0}
    if cnn < max(floor, VERIFY_MIN_CNN):
        return 0.0, unverified
    ref_local = bank.local_features(r, snapshot=snap)
    if ref_local is None:
        log.warning("reference %s has no local features (indexed before pair verification): its matches "
                    "cannot be verified and are not reported; index it again", snap.ref_ids[r])
        return 0.0, unverified
    ev = verify(query.local, query.timestamps, ref_local, snap.timestamps[r], seg, params)
    return weight(ev, params), {"cnn_score": cnn, "content_inliers": ev.content_inliers,
                                "verified_frames": float(ev.frames)}


def match_query(
    bank,
    item,
    *,
    fps: float = DEFAULT_FPS,
    params: MatchParams | None = None,
    min_score: float | None = None,
) -> MatchReport:
    """Match a query given as a video path or a :class:`VideoEmbedding` (see ``Bank.match``)."""
    params = params or MatchParams()
    embedder = bank.embedder()
    if isinstance(item, VideoEmbedding):
        q, name = item, item.video_id
    else:
        q = embed_video(item, embedder, fps=fps, hash_file=False, keypoints="query" if params.verify else "none")
        name = str(item)
    report = match_embedding(
        bank, q, calibration=calibration_for(embedder), params=params, min_score=min_score, query_name=name
    )
    if isinstance(item, VideoEmbedding):
        return report
    return with_hash_matches(bank, report, Path(item), q.duration, device=getattr(embedder, "device", "cpu"))


def hash_signals_needed(bank) -> tuple[bool, bool, bool]:
    """Which hash signals a query needs against ``bank``: (exact file hashes, vPDQ, image PDQ)."""
    return bank.has_hashes(), bank.has_hashes((VPDQSignal.name,)), bank.has_hashes((PDQSignal.name,))


def with_hash_matches(
    bank,
    report: MatchReport,
    path: Path,
    duration: float,
    *,
    device: str = "cpu",
    digests: dict[str, str] | None = None,
    variants: list | None = None,
) -> MatchReport:
    """Add the hash-signal matches (exact MD5/SHA-1, vPDQ, image PDQ) of query file ``path`` to
    its CNN ``report``, for the signals the bank holds. ``digests`` (from ``file_hashes``) and
    ``variants`` (from ``hash_video_dihedral``) may be given when computed elsewhere (e.g. on a
    distributed worker); otherwise they are computed here."""
    exact, has_vpdq, has_pdq = hash_signals_needed(bank)
    if exact:
        report = _with_exact_matches(bank, report, Path(path), duration, digests=digests)
    if has_vpdq or has_pdq:
        if variants is None:
            from vmatch.signals.vpdq import hash_video_dihedral

            variants = hash_video_dihedral(path, device=device)
        if has_vpdq:
            report = with_vpdq_matches(bank, report, *variants)
        if has_pdq:
            report = with_pdq_matches(bank, report, [f for v in variants for f in v])
    return report


def with_pdq_matches(bank, report: MatchReport, frames: list) -> MatchReport:
    """Add the references holding an image PDQ within 31 bits of one of the query's frames (any
    dihedral variant); score = 1 - distance / 256; ``details``: distance and the frame's time."""
    found = [
        Match(reference=ref, score=PDQSignal.score(dist), segments=(), signal_type=PDQSignal.name,
              details={"distance": dist, "query_time": t})
        for ref, dist, t in bank.match_pdq(frames)
    ]
    return _merged(report, found)


def with_vpdq_matches(bank, report: MatchReport, *query_variants: list) -> MatchReport:
    """Add the references whose vPDQ matches the query by the standard rule (Hamming <= 31,
    quality >= 50, query match >= 80 %); score = query match percent / 100.

    ``query_variants``: the query's vPDQ, optionally followed by its dihedral variants (flips,
    90-degree rotations); each is matched and the best result per reference is kept.
    """
    best: dict[str, object] = {}
    for variant in query_variants:
        for ref, m in bank.match_vpdq(variant):
            if ref not in best or m.query_match_percent > best[ref].query_match_percent:
                best[ref] = m
    found = [
        Match(
            reference=ref,
            score=VPDQSignal.score(m),
            segments=(),
            signal_type=VPDQSignal.name,
            details={"query_match_percent": m.query_match_percent,
                     "compared_match_percent": m.compared_match_percent},
        )
        for ref, m in best.items()
    ]
    return _merged(report, found)


def _with_exact_matches(
    bank, report: MatchReport, path: Path, duration: float, *, digests: dict[str, str] | None = None
) -> MatchReport:
    """Add the references whose stored MD5/SHA-1 equals the query file's (score 1: the same bytes,
    so the whole video on both timelines)."""
    from vmatch.signals.exact import file_hashes

    if digests is None:
        digests = file_hashes(path)
    whole = (Segment(0.0, duration, 0.0, duration, 1.0),)
    return _merged(report, _exact_matches(bank, [(t, digests[t]) for t in EXACT_SIGNAL_TYPES], segments=whole))


def with_value_matches(bank, report: MatchReport, signal_type: str, values: list[str]) -> MatchReport:
    """Add the references holding one of the hash-list ``values`` (canonical, of list type
    ``signal_type``: md5, sha1, pdq): an exact digest equal to one (score 1, no segment, one match
    per reference), a PDQ within 31 bits of one (:func:`with_pdq_matches`, value ``i`` as query
    frame ``i``). What ``vmatch lookup`` of a hash list and the service's lookup of a value report."""
    if not list_signal_type(signal_type).exact:
        return with_pdq_matches(bank, report, PDQSignal.query_frames(values))
    return _merged(report, _exact_matches(bank, [(signal_type, v) for v in values]))


def _exact_matches(bank, values: list[tuple[str, str]], *, segments: tuple[Segment, ...] = ()) -> list[Match]:
    """One match (score 1, ``segments``) per reference and signal type holding one of the exact
    ``(signal_type, value)`` pairs, in the order found."""
    found: dict[tuple[str, str], Match] = {}
    for t, v in values:
        for ref in bank.lookup_hash(t, v):
            found.setdefault((ref, t), Match(reference=ref, score=1.0, segments=segments, signal_type=t))
    return list(found.values())


def _merged(report: MatchReport, found: list[Match]) -> MatchReport:
    """``report`` with the hash-signal matches ``found`` added, best score first (ties: reference,
    signal type): the one place where a signal's matches join a report."""
    if not found:
        return report
    matches = sorted([*found, *report.matches], key=lambda m: (-m.score, m.reference, m.signal_type))
    return dataclasses.replace(report, matches=tuple(matches))
