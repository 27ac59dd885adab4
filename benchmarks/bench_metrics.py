"""Benchmark metrics for near-duplicate video matching, implemented from published definitions.

* Pair micro-AP (VSC 2022 descriptor track / "pairwise micro-AP"): every predicted
  (query, reference) pair of every query is ranked globally by score; precision and recall are
  counted over ground-truth pairs; AP = sum over the recall steps of precision x delta-recall
  (i.e. sum of the precisions at each true positive / number of ground-truth pairs). Predicted
  pairs with equal scores are taken as one group (one step), so ties cannot be ordered luckily.
* Recall at precision p: the largest recall reached at an operating point (score threshold) whose
  precision is >= p.
* Segment AP (VSC 2022 matching track, ``match_metric`` of facebookresearch/vsc2022, after VCSL):
  predictions (query, ref, q-interval, r-interval, score) are sorted by score; after each group of
  equal scores, per pair and per axis (query, reference) the union of the predicted intervals is
  intersected with the union of the ground-truth intervals *that overlap (as 2-D boxes) at least
  one prediction of that pair*; micro-averaged sums give per-axis precision = intersection /
  predicted length and recall = intersection / ground-truth length; P = sqrt(Pq * Pr),
  R = sqrt(Rq * Rr); AP = sum P x delta-R.
* Localisation IoU: for a detected positive, IoU of the predicted and true query intervals.

Pure Python + numpy; no dependency on vmatch.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Sequence


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A (predicted or true) copied segment: query interval x reference interval, in seconds."""

    query_id: Hashable
    ref_id: Hashable
    query_start: float
    query_end: float
    ref_start: float
    ref_end: float
    score: float = 1.0

    def pair(self) -> tuple:
        return (self.query_id, self.ref_id)

    def interval(self, axis: str) -> tuple[float, float]:
        return (self.query_start, self.query_end) if axis == "q" else (self.ref_start, self.ref_end)

    def overlap_area(self, other: "Box") -> float:
        dq = min(self.query_end, other.query_end) - max(self.query_start, other.query_start)
        dr = min(self.ref_end, other.ref_end) - max(self.ref_start, other.ref_start)
        return max(dq, 0.0) * max(dr, 0.0)


@dataclass
class PRCurve:
    precisions: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------------


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of closed intervals as a sorted list of disjoint intervals (empty ones dropped)."""
    out: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in intervals if b >= a):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def total_length(intervals: Iterable[tuple[float, float]]) -> float:
    return sum(e - s for s, e in merge_intervals(intervals))


def intersection_length(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]) -> float:
    """|A ∩ B| for two unions of intervals."""
    a, b = list(a), list(b)
    return total_length(a) + total_length(b) - total_length(a + b)


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:
        return 1.0 if a == b else 0.0
    return inter / union


# --------------------------------------------------------------------------------------------------
# Pair level
# --------------------------------------------------------------------------------------------------


def pair_scores(preds: Iterable[Box]) -> dict[tuple, float]:
    """Best score per (query, reference) pair."""
    best: dict[tuple, float] = {}
    for p in preds:
        k = p.pair()
        if k not in best or p.score > best[k]:
            best[k] = p.score
    return best


def pair_pr(gt_pairs: set, scored_pairs: dict[tuple, float]) -> PRCurve:
    """Operating points of a global ranking of scored pairs (one point per distinct score)."""
    curve = PRCurve()
    n_gt = len(gt_pairs)
    if n_gt == 0:
        return curve
    ranked = sorted(scored_pairs.items(), key=lambda kv: -kv[1])
    tp = fp = 0
    for score, group in itertools.groupby(ranked, key=lambda kv: kv[1]):
        for pair, _ in group:
            if pair in gt_pairs:
                tp += 1
            else:
                fp += 1
        curve.precisions.append(tp / (tp + fp))
        curve.recalls.append(tp / n_gt)
        curve.scores.append(float(score))
    return curve


def pair_micro_ap(gt_pairs: Iterable[tuple], scored_pairs: dict[tuple, float]) -> float:
    """VSC 2022 micro-AP over (query, reference) pairs (sum of precision x delta-recall)."""
    curve = pair_pr(set(gt_pairs), scored_pairs)
    ap, prev_r = 0.0, 0.0
    for p, r in zip(curve.precisions, curve.recalls):
        ap += p * (r - prev_r)
        prev_r = r
    return ap


def recall_at_precision(curve: PRCurve, min_precision: float) -> tuple[float, float | None]:
    """Largest recall at an operating point with precision >= min_precision, and its score
    threshold (None when no operating point qualifies: recall 0)."""
    best_r, best_s = 0.0, None
    for p, r, s in zip(curve.precisions, curve.recalls, curve.scores):
        if p >= min_precision - 1e-12 and r > best_r:
            best_r, best_s = r, s
    return best_r, best_s


# --------------------------------------------------------------------------------------------------
# Segment level (VSC 2022 matching track)
# --------------------------------------------------------------------------------------------------


class _PairState:
    def __init__(self) -> None:
        self.gts: list[Box] = []
        self.preds: list[Box] = []
        self.inter = {"q": 0.0, "r": 0.0}
        self.total = {"q": 0.0, "r": 0.0}

    def add(self, pred: Box) -> tuple[dict, dict]:
        self.preds.append(pred)
        hit_gts = [g for g in self.gts if any(g.overlap_area(p) > 0 for p in self.preds)]
        d_inter, d_total = {}, {}
        for ax in ("q", "r"):
            pi = [p.interval(ax) for p in self.preds]
            gi = [g.interval(ax) for g in hit_gts]
            inter = intersection_length(pi, gi) if gi else 0.0
            tot = total_length(pi)
            d_inter[ax], d_total[ax] = inter - self.inter[ax], tot - self.total[ax]
            self.inter[ax], self.total[ax] = inter, tot
        return d_inter, d_total


def segment_ap(gts: Sequence[Box], preds: Sequence[Box]) -> tuple[float, PRCurve]:
    """VSC 2022 matching-track segment AP (and its PR curve)."""
    pairs: dict[tuple, _PairState] = defaultdict(_PairState)
    for g in gts:
        pairs[g.pair()].gts.append(g)
    gt_len = {"q": 0.0, "r": 0.0}
    for st in pairs.values():
        for ax in ("q", "r"):
            gt_len[ax] += total_length(g.interval(ax) for g in st.gts)
    curve = PRCurve()
    if gt_len["q"] <= 0 or gt_len["r"] <= 0:
        return 0.0, curve
    inter = {"q": 0.0, "r": 0.0}
    tot = {"q": 0.0, "r": 0.0}
    ap, recall = 0.0, 0.0
    ranked = sorted(preds, key=lambda b: -b.score)
    for score, group in itertools.groupby(ranked, key=lambda b: b.score):
        for p in group:
            di, dt = pairs[p.pair()].add(p)
            for ax in ("q", "r"):
                inter[ax] += di[ax]
                tot[ax] += dt[ax]
        rq, rr = inter["q"] / gt_len["q"], inter["r"] / gt_len["r"]
        pq = inter["q"] / tot["q"] if tot["q"] > 0 else 0.0
        pr = inter["r"] / tot["r"] if tot["r"] > 0 else 0.0
        new_recall = math.sqrt(rq * rr)
        precision = math.sqrt(pq * pr)
        if new_recall > recall:
            ap += precision * (new_recall - recall)
            recall = new_recall
            curve.precisions.append(precision)
            curve.recalls.append(recall)
            curve.scores.append(float(score))
    return ap, curve


# --------------------------------------------------------------------------------------------------
# Operating-point figures
# --------------------------------------------------------------------------------------------------


def localisation_iou(gts: Sequence[Box], preds: Sequence[Box], threshold: float) -> list[float]:
    """For every ground-truth pair detected at ``threshold`` (some prediction of the pair with
    score >= threshold), the query-interval IoU of its best-scoring prediction with the union
    hull of the pair's true query intervals."""
    best: dict[tuple, Box] = {}
    for p in preds:
        if p.score >= threshold and (p.pair() not in best or p.score > best[p.pair()].score):
            best[p.pair()] = p
    gt_by_pair: dict[tuple, list[Box]] = defaultdict(list)
    for g in gts:
        gt_by_pair[g.pair()].append(g)
    out = []
    for k, gl in gt_by_pair.items():
        if k in best:
            gq = (min(g.query_start for g in gl), max(g.query_end for g in gl))
            out.append(interval_iou((best[k].query_start, best[k].query_end), gq))
    return out


def recall_by_family(
    gt_pairs_family: dict[tuple, str], scored_pairs: dict[tuple, float], threshold: float
) -> dict[str, tuple[int, int]]:
    """{family: (detected, total)} of ground-truth pairs found with score >= threshold."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair, fam in gt_pairs_family.items():
        out[fam][1] += 1
        if scored_pairs.get(pair, -math.inf) >= threshold:
            out[fam][0] += 1
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def false_matches(
    negative_queries: Iterable, scored_pairs: dict[tuple, float], threshold: float
) -> tuple[int, int]:
    """(negative queries with any match >= threshold, number of negative queries)."""
    neg = set(negative_queries)
    hit = {q for (q, _r), s in scored_pairs.items() if q in neg and s >= threshold}
    return len(hit), len(neg)


def wrong_reference_pairs(
    gt_pairs: set, scored_pairs: dict[tuple, float], threshold: float, negative_queries: Iterable
) -> int:
    """Pairs at >= threshold that are not ground truth, on positive queries (wrong reference)."""
    neg = set(negative_queries)
    return sum(
        1 for (q, r), s in scored_pairs.items() if s >= threshold and q not in neg and (q, r) not in gt_pairs
    )


# --------------------------------------------------------------------------------------------------
# Uncertainty: paired bootstrap over queries
# --------------------------------------------------------------------------------------------------


def _micro_ap_arrays(scores, positive, n_gt: int) -> float:
    """:func:`pair_micro_ap` on arrays (equal scores one step, as there)."""
    import numpy as np

    if n_gt == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    tp = np.cumsum(pos)
    seen = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # the last prediction of each group of equal scores
    prec, rec = tp[last] / seen[last], tp[last] / n_gt
    return float(np.sum(prec * np.diff(np.r_[0.0, rec])))


def paired_bootstrap_micro_ap(
    gt_pairs: Iterable[tuple],
    scored_a: dict[tuple, float],
    scored_b: dict[tuple, float],
    query_ids: Sequence[Hashable],
    *,
    n: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Pair micro-AP of two systems on the same queries, and a confidence interval of ``b - a``.

    The queries (positives and negatives alike) are resampled with replacement ``n`` times; each
    resample scores both systems on the same queries (a paired bootstrap), so the interval says how
    much of a difference the benchmark's few queries can tell apart.

    Args:
        gt_pairs: Ground-truth (query, reference) pairs.
        scored_a, scored_b: Best score per predicted pair of each system (:func:`pair_scores`).
        query_ids: Every query of the benchmark (those without any prediction too).
        n: Bootstrap resamples.
        seed: Random seed.
        level: Two-sided confidence level of the percentile interval.

    Returns:
        ``{"a", "b", "diff", "lo", "hi", "p_b_below_a"}``: the two full-set µAPs, ``b - a``, the
        percentile interval of ``b - a`` and the share of resamples where b scores below a.
    """
    import numpy as np

    gt = set(gt_pairs)
    queries = list(dict.fromkeys(query_ids))
    index = {q: i for i, q in enumerate(queries)}
    n_gt_q = np.zeros(len(queries), np.int64)
    for q, _r in gt:
        if q in index:
            n_gt_q[index[q]] += 1

    def per_query(scored: dict[tuple, float]):
        rows: list[list[tuple[float, bool]]] = [[] for _ in queries]
        for (q, r), s in scored.items():
            if q in index:
                rows[index[q]].append((float(s), (q, r) in gt))
        return [(np.array([s for s, _ in r], np.float64), np.array([p for _, p in r], bool)) for r in rows]

    pa, pb = per_query(scored_a), per_query(scored_b)

    def ap(rows, sample) -> float:
        s = np.concatenate([rows[i][0] for i in sample]) if len(sample) else np.zeros(0)
        p = np.concatenate([rows[i][1] for i in sample]) if len(sample) else np.zeros(0, bool)
        return _micro_ap_arrays(s, p, int(n_gt_q[sample].sum()))

    full = np.arange(len(queries))
    a, b = ap(pa, full), ap(pb, full)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for k in range(n):
        sample = rng.integers(0, len(queries), len(queries))
        diffs[k] = ap(pb, sample) - ap(pa, sample)
    tail = (1.0 - level) / 2
    return {
        "a": a, "b": b, "diff": b - a,
        "lo": float(np.quantile(diffs, tail)), "hi": float(np.quantile(diffs, 1 - tail)),
        "p_b_below_a": float(np.mean(diffs < 0)),
    }
