"""Verification of candidate pairs: do the aligned frames show the same content, not only the
same kind of content?

Whole-frame CNN features describe what a frame looks like (a terminal, a slide template, a
street, one static camera), so videos of one style, place or source score high against each
other although they share no footage. Before a pair is reported, its aligned frames are compared
by *local features with geometric verification*: ORB keypoints (OpenCV) of the query frame are
matched to those of the aligned reference frame (ratio test), and an affine transform is fitted
with RANSAC; only matches consistent with one transform (the inliers) count. A copy — cropped,
scaled, rotated a little, re-encoded, captioned — keeps its keypoints in one geometric relation;
a look-alike matches glyphs, textures and template elements here and there, with no common
geometry. Flips: the query's keypoints are also extracted from the mirrored frame.

Two kinds of local features are compared, and a frame pair's evidence is the better of the two:
ORB (binary, fast, good on sharp synthetic content) and small SIFT keypoints of the frame at half
size (more robust to the
blur of low-resolution re-encodes and to the rescaling of picture-in-picture and 9:16 re-edits;
chosen with ``benchmarks/verify_study.py`` on the training part and a third draw, where it found
50 of 79 copies against ORB's 47 and 7 of 44 against 5, with no negative more flagged). A
mirror's SIFT descriptors are a permutation of the frame's own (:func:`mirror_sift`): no second
SIFT pass.

*Static content*: what does not change along a reference (a static camera's background, a slide
template, a terminal's window chrome, a logo) is shared by every video of that source, copy or
not. At indexing, each reference keypoint found again at the same place (same descriptor) in most
reference frames at least :data:`STATIC_GAP_S` seconds away is marked *static*; verification
counts *content inliers*: inliers whose reference keypoint is not static. A copy of a static
camera keeps the moving foreground at the right time; the same camera at another time does not.

Content inliers are counted as distinct places (:attr:`VerifyParams.cell_px` cells of the
reference frame), so that a word or logo two slides of one template share at the same place is
one piece of evidence, not dozens. The evidence of a pair is the best content-inlier count over up to :data:`VerifyParams.frames`
aligned frame pairs of its best segment (each query frame against the two reference frames
sampled on either side of its aligned time);
:func:`fused_score` turns it and the CNN pair score into the one score compared with the global
threshold (parameters calibrated on the training part of the benchmark, see ``models/``).

Frames: the sampled frames the CNN sees (squashed to the model's input size) are converted to
grey and stretched back to the video's display aspect (long side <= 2x the short one), so that
ORB's patches are isotropic whatever the query's aspect (vertical 9:16 re-edits included).

Storage (no media): per keypoint 2 x uint16 coordinates (1/16 px), a 32-byte ORB or 128-byte SIFT
descriptor and a static bit; :data:`MAX_KEYPOINTS` per frame of each kind at most (~9 KB of ORB
and up to ~34 KB of SIFT a frame for a reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError
# The record, and a reference's static keypoints (its preparation as a bank stores it), re-exported:
from vmatch.keypoints import (  # noqa: F401
    MAX_KEYPOINTS, ORB_BYTES, SIFT_BYTES, SIFT_TWIN_L2, STATIC_GAP_S, STATIC_PROBES, STATIC_SHARE, LocalFeatures, empty,
    prepare_reference, with_static,
)

#: Keypoints detected per frame (the strongest by ORB's Harris response): on a reference before
#: the static ones are found and the kept ones chosen; on a query (and its mirror) as they are.
DETECT_KEYPOINTS = 1024
QUERY_KEYPOINTS = 512
#: SIFT keypoints detected per reference frame (before the static ones are found; MAX_KEYPOINTS
#: kept) and per query frame (kept as they are): SIFT finds blurred, small and rescaled content
#: (low-resolution re-encodes, picture-in-picture, 9:16 re-edits) that ORB at this frame size misses.
SIFT_DETECT_KEYPOINTS = 512
SIFT_QUERY_KEYPOINTS = 384
#: SIFT runs on the work frame at half size (a quarter of the cost of the full size, which SIFT
#: doubles first; its keypoints then match fewer glyphs of one font: slides of one template with
#: other text reached 6 places against 13 at full size on the training part). Largest SIFT keypoint
#: kept (diameter, pixels of that half-size frame): a larger keypoint's descriptor spans a region
#: a moving object changes, so a static camera's background near the objects is not found static
#: and a recording at another time would verify (``tests/test_verify.py``). Both chosen on the
#: training part and a third draw (``benchmarks/verify_study.py``).
SIFT_MAX_SIZE = 5.0


# ---------------------------------------------------------------------- extraction
def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - a dependency of vmatch
        raise UsageError(f"verification needs OpenCV (pip install opencv-python-headless): {e}") from None
    return cv2


def work_size(input_hw: tuple[int, int], aspect: float) -> tuple[int, int]:
    """(width, height) of the grey frame ORB works on: the model's input frame stretched back to the
    video's display ``aspect`` (width / height, clamped to [1/2, 2]) by enlarging one side."""
    h, w = int(input_hw[0]), int(input_hw[1])
    a = aspect if (aspect and math.isfinite(aspect) and aspect > 0) else w / h
    a = min(2.0, max(0.5, a)) * h / w  # relative to the input frame's own shape
    return (int(round(w * a)), h) if a >= 1 else (w, int(round(h / a)))


class Extractor:
    """ORB and SIFT keypoints of frames, one frame at a time (not thread-safe: one per thread).
    ``mirrored`` extracts ORB keypoints of the mirror image too; SIFT's mirror needs no second
    pass (:func:`mirror_sift`). ``sift_keypoints=0`` extracts no SIFT set."""

    def __init__(self, *, aspect: float, mirrored: bool = False, max_keypoints: int = DETECT_KEYPOINTS,
                 sift_keypoints: int = SIFT_DETECT_KEYPOINTS) -> None:
        cv2 = _cv2()
        self._cv2 = cv2
        self.aspect = float(aspect) if aspect else 0.0
        self.mirrored = bool(mirrored)
        self._orb = cv2.ORB_create(nfeatures=int(max_keypoints), scaleFactor=1.2, nlevels=6, edgeThreshold=15,
                                   patchSize=15, fastThreshold=10)
        self._sift = cv2.SIFT_create(nfeatures=int(sift_keypoints)) if sift_keypoints else None
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._parts_m: list[tuple[np.ndarray, np.ndarray]] = []
        self._parts_s: list[tuple[np.ndarray, np.ndarray]] = []

    def _grey(self, rgb: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        wh = work_size(rgb.shape[:2], self.aspect)
        return cv2.resize(g, wh, interpolation=cv2.INTER_LINEAR) if wh != (g.shape[1], g.shape[0]) else g

    def _detect(self, grey: np.ndarray, sift: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if sift:  # on the frame at half size (SIFT doubles its input first): coordinates scaled back
            h, w = grey.shape[:2]
            grey = self._cv2.resize(grey, (max(1, w // 2), max(1, h // 2)), interpolation=self._cv2.INTER_AREA)
        kp, d = (self._sift if sift else self._orb).detectAndCompute(grey, None)
        if d is None or not kp:
            return np.zeros((0, 2), np.float32), np.zeros((0, SIFT_BYTES if sift else ORB_BYTES), np.uint8)
        if sift:  # small keypoints only; OpenCV's SIFT descriptors are integers in [0, 255] held as float32
            keep = [i for i, k in enumerate(kp) if k.size <= SIFT_MAX_SIZE]
            coords = np.array([kp[i].pt for i in keep], np.float32).reshape(-1, 2) * 2.0 + 0.5
            return coords, np.clip(np.round(d[keep]), 0, 255).astype(np.uint8).reshape(-1, SIFT_BYTES)
        return np.array([k.pt for k in kp], np.float32), d

    def add(self, rgb: np.ndarray) -> None:
        """Extract the keypoints of one RGB frame (uint8 [H, W, 3]), appended as the next frame."""
        g = self._grey(rgb)
        self._parts.append(self._detect(g))
        if self._sift is not None:
            self._parts_s.append(self._detect(g, sift=True))
        if self.mirrored:
            self._parts_m.append(self._detect(np.ascontiguousarray(g[:, ::-1])))

    def add_many(self, frames: np.ndarray) -> None:
        for f in frames:
            self.add(f)

    def result(self) -> LocalFeatures:
        def pack(parts, width=ORB_BYTES):
            if not parts:
                return empty(width=width)
            counts = np.array([len(c) for c, _ in parts], np.int32)
            return LocalFeatures(counts, np.concatenate([c for c, _ in parts]), np.concatenate([d for _, d in parts]),
                                 np.zeros(int(counts.sum()), bool))

        main = pack(self._parts)
        m = pack(self._parts_m) if self.mirrored else None
        sift = pack(self._parts_s, SIFT_BYTES) if self._sift is not None else None
        return LocalFeatures(main.counts, main.coords, main.descriptors, main.static, m, sift=sift)


# ---------------------------------------------------------------------- verification
@dataclass(frozen=True)
class VerifyParams:
    """Parameters of pair verification and of the fused score.

    Attributes:
        frames: aligned frame pairs compared per pair (evenly along its best segment).
        ratio: Lowe's ratio test on descriptor distances.
        max_hamming: largest descriptor distance of a match.
        reproj_px: RANSAC reprojection threshold (pixels of the work frame).
        evidence_lo, evidence_hi: content inliers mapped to a verification weight of 0 and 1.
        statistic: which frame pair's content inliers count: ``"best"`` or ``"second"`` (best).
        transform: the geometry fitted with RANSAC: ``"affine"`` or ``"similarity"``.
        cell_px: content inliers are counted once per cell of this many pixels of the reference
            frame (distinct places, not keypoints: a word or a logo shared by one template is one
            place, a copy matches all over the frame); 0 counts keypoints.

    The defaults of ``evidence_lo``, ``evidence_hi`` and ``statistic`` were fitted on the training
    part of the benchmark by ``models/fit_verification.py`` (its log: ``models/verification_fit.md``).
    """

    frames: int = 6
    ratio: float = 0.8
    max_hamming: int = 64
    reproj_px: float = 3.0
    evidence_lo: float = 4.0
    evidence_hi: float = 19.0
    statistic: str = "best"
    transform: str = "affine"
    cell_px: float = 16.0

    def __post_init__(self) -> None:
        if self.frames < 1 or not (0 < self.ratio <= 1) or self.reproj_px <= 0:
            raise UsageError("VerifyParams: frames >= 1, 0 < ratio <= 1, reproj_px > 0")
        if self.statistic not in ("best", "second"):
            raise UsageError("VerifyParams: statistic must be 'best' or 'second'")
        if self.transform not in ("affine", "similarity"):
            raise UsageError("VerifyParams: transform must be 'affine' or 'similarity'")
        if not (0 <= self.evidence_lo < self.evidence_hi):
            raise UsageError("VerifyParams: need 0 <= evidence_lo < evidence_hi")


@dataclass(frozen=True)
class Evidence:
    """What verification found for one pair: content inliers of the best compared frame pair, all
    inliers of that pair, how many frame pairs were compared, and the content inliers of the
    second best pair."""

    content_inliers: float
    inliers: float
    frames: int
    second_content_inliers: float = 0.0

    def statistic(self, name: str) -> float:
        return self.content_inliers if name == "best" else self.second_content_inliers


def mirror_sift(frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SIFT keypoints of a frame's mirror image, from the frame's own: x negated (the affine
    fit absorbs the frame width) and each descriptor permuted — mirroring reverses the rows of
    SIFT's 4 x 4 grid in the keypoint's frame and negates its 8 orientation bins (measured: the
    permuted descriptors are within L2 ~33 of those OpenCV computes on the mirror, norm ~512)."""
    coords, desc, static = frame
    m = coords.copy()
    m[:, 0] = -m[:, 0]
    return m, desc[:, _SIFT_MIRROR], static


_SIFT_MIRROR = np.arange(128).reshape(4, 4, 8)[::-1, :, :][:, :, (-np.arange(8)) % 8].reshape(-1)


def _inliers(cv2, bf, q, r, params: VerifyParams, sift: bool = False) -> tuple[int, int]:
    """(content inliers, inliers) of query keypoints ``q`` against reference ``r`` (ORB, or
    SIFT with ``sift``)."""
    pq, dq, _ = q
    pr, dr, sr = r
    if len(dq) < 6 or len(dr) < 6:
        return 0, 0
    if sift:
        ms = bf.knnMatch(dq.astype(np.float32), dr.astype(np.float32), k=2)
        good = [m[0] for m in ms if len(m) == 2 and m[0].distance < params.ratio * m[1].distance]
    else:
        ms = bf.knnMatch(dq, dr, k=2)
        good = [m[0] for m in ms if len(m) == 2 and m[0].distance < params.ratio * m[1].distance
                and m[0].distance <= params.max_hamming]
    if len(good) < 6:
        return 0, 0
    qi = np.fromiter((m.queryIdx for m in good), np.int64, len(good))
    ri = np.fromiter((m.trainIdx for m in good), np.int64, len(good))
    fit = cv2.estimateAffine2D if params.transform == "affine" else cv2.estimateAffinePartial2D
    M, inl = fit(pq[qi], pr[ri], method=cv2.RANSAC, ransacReprojThreshold=params.reproj_px, maxIters=500,
                 confidence=0.99)
    if M is None or inl is None:
        return 0, 0
    sx, sy = math.hypot(M[0, 0], M[1, 0]), math.hypot(M[0, 1], M[1, 1])
    if not (0.25 < sx < 4.0 and 0.25 < sy < 4.0):  # degenerate fit
        return 0, 0
    inl = inl.ravel().astype(bool)
    content = inl & ~sr[ri]
    if params.cell_px > 0:  # distinct places, not keypoints: a shared word or logo is one place
        cells = np.unique(np.floor(pr[ri[content]] / params.cell_px).astype(np.int64) @ np.array([1, 1 << 20]))
        return int(len(cells)), int(inl.sum())
    return int(content.sum()), int(inl.sum())


def frame_pairs(q_times: np.ndarray, r_times: np.ndarray, seg, n: int) -> list[tuple[int, tuple[int, ...]]]:
    """Up to ``n`` query frames evenly along segment ``seg``, each with the (one or two) reference
    frames sampled nearest to its aligned time, one on each side of it: the two videos are sampled
    at their own phase and a copy may be sped up, so the exact frame lies between two samples."""
    qt, rt = np.asarray(q_times), np.asarray(r_times)
    if not len(qt) or not len(rt):
        return []
    qs, qe, rs, re_ = seg.query_start, seg.query_end, seg.reference_start, seg.reference_end
    targets = np.linspace(qs, qe, n) if qe > qs else np.array([qs])
    rate = (re_ - rs) / (qe - qs) if qe > qs else 1.0
    out: list[tuple[int, tuple[int, ...]]] = []
    for t in targets:
        i = int(np.argmin(np.abs(qt - t)))
        if any(i == k for k, _ in out):
            continue
        tr = rs + (qt[i] - qs) * rate
        after = int(np.searchsorted(rt, tr))
        js = tuple(j for j in (after - 1, after) if 0 <= j < len(rt))
        out.append((i, js))
    return out


def verify(query: LocalFeatures, q_times: np.ndarray, ref: LocalFeatures, r_times: np.ndarray, seg,
           params: VerifyParams = VerifyParams()) -> Evidence:
    """Evidence that segment ``seg`` of the query shows the reference's content (both as
    :class:`LocalFeatures`; the query's mirrored keypoints are tried too when present)."""
    cv2 = _cv2()
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    bf_sift = cv2.BFMatcher(cv2.NORM_L2)
    with_sift = query.sift is not None and ref.sift is not None
    scores: list[tuple[int, int]] = []
    for i, js in frame_pairs(q_times, r_times, seg, params.frames):
        best = (0, 0)
        qs = query.sift.frame(i) if with_sift else None
        for j in js:
            r = ref.frame(j)
            best = max(best, _inliers(cv2, bf, query.frame(i), r, params))
            if query.mirrored is not None:
                best = max(best, _inliers(cv2, bf, query.mirrored.frame(i), r, params))
            if with_sift:
                rs = ref.sift.frame(j)
                best = max(best, _inliers(cv2, bf_sift, qs, rs, params, sift=True),
                           _inliers(cv2, bf_sift, mirror_sift(qs), rs, params, sift=True))
        scores.append(best)
    if not scores:
        return Evidence(0.0, 0.0, 0)
    scores.sort(reverse=True)
    second = scores[1] if len(scores) > 1 else scores[0]
    return Evidence(float(scores[0][0]), float(scores[0][1]), len(scores), float(second[0]))


def weight(evidence: Evidence | None, params: VerifyParams = VerifyParams()) -> float:
    """Verification weight in [0, 1] of ``evidence`` (0 without any)."""
    if evidence is None:
        return 0.0
    w = (evidence.statistic(params.statistic) - params.evidence_lo) / (params.evidence_hi - params.evidence_lo)
    return float(min(1.0, max(0.0, w)))


def fused_score(cnn_score: float, evidence: Evidence | None, params: VerifyParams = VerifyParams()) -> float:
    """The pair score compared with the global threshold: the CNN score times the verification
    weight, so that a pair without content evidence scores 0 however alike its frames look.

    (Tried and dropped: letting strong content evidence lift a pair the CNN scores below the
    threshold. On the training part and a third draw it found one more copy in 123, and it made a
    match of two unrelated videos that share one identical title slide —
    ``tests/test_pipeline.py::test_black_solid_and_text_slides_do_not_make_a_match``: the CNN's
    score normalisation is what says such generic content is no copy.)"""
    return float(cnn_score) * weight(evidence, params)
