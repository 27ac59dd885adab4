"""benchmarks/bench_metrics.py on tiny hand-made examples whose answers are worked out by hand."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_metrics as bm  # noqa: E402
from bench_metrics import Box  # noqa: E402


def test_intervals():
    assert bm.merge_intervals([(4, 7), (2, 5), (9, 10)]) == [(2, 7), (9, 10)]
    # [(2,3),(4,5)] -> 2 ; [(3.5,5),(7,8)] -> 2.5
    assert bm.intersection_length([(2, 5), (7, 8)], [(1, 3), (4, 7)]) == pytest.approx(2)
    assert bm.intersection_length([(2, 5), (7, 8)], [(-1, 0), (3.5, 12)]) == pytest.approx(2.5)
    assert bm.interval_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert bm.interval_iou((0, 1), (2, 3)) == 0.0


def test_pair_ap_perfect_and_hand_computed():
    gt = {("q1", "a"), ("q2", "b")}
    assert bm.pair_micro_ap(gt, {("q1", "a"): 0.9, ("q2", "b"): 0.8, ("q3", "a"): 0.1}) == pytest.approx(1.0)
    # ranking: TP(0.9), FP(0.8), TP(0.7): precisions at the TPs 1 and 2/3 -> AP = (1 + 2/3) / 2
    scores = {("q1", "a"): 0.9, ("q3", "a"): 0.8, ("q2", "b"): 0.7}
    assert bm.pair_micro_ap(gt, scores) == pytest.approx((1 + 2 / 3) / 2)
    # a missed GT pair caps recall at 1/2: AP = 1 * 1/2
    assert bm.pair_micro_ap(gt, {("q1", "a"): 0.5}) == pytest.approx(0.5)
    # a tie between a TP and a FP is one step: precision 1/2 at recall 1/2, then nothing
    assert bm.pair_micro_ap(gt, {("q1", "a"): 0.5, ("q3", "a"): 0.5}) == pytest.approx(0.25)


def test_recall_at_precision():
    gt = {("q1", "a"), ("q2", "b"), ("q4", "c")}
    scores = {("q1", "a"): 0.9, ("q2", "b"): 0.8, ("q3", "a"): 0.7, ("q4", "c"): 0.6}
    curve = bm.pair_pr(gt, scores)
    # points: (P=1,R=1/3), (1,2/3), (2/3,2/3), (3/4,1)
    assert bm.recall_at_precision(curve, 0.90) == (pytest.approx(2 / 3), 0.8)
    assert bm.recall_at_precision(curve, 0.70) == (pytest.approx(1.0), 0.6)
    assert bm.recall_at_precision(bm.pair_pr(gt, {("q3", "a"): 1.0}), 0.9) == (0.0, None)


def B(q, r, qs, qe, rs, re, s=1.0):
    return Box(q, r, qs, qe, rs, re, s)


def test_segment_ap_perfect():
    gt = [B("q", "r", 4, 14, 10, 18)]
    ap, _ = bm.segment_ap(gt, [B("q", "r", 4, 14, 10, 18, 0.9)])
    assert ap == pytest.approx(1.0)


def test_segment_ap_partial_overlap():
    # GT q:[0,10] r:[0,10]; pred q:[5,15] r:[5,15]: intersection 5 on each axis,
    # precision 5/10 and recall 5/10 on both axes -> P = R = 1/2 -> AP = 1/4
    ap, curve = bm.segment_ap([B("q", "r", 0, 10, 0, 10)], [B("q", "r", 5, 15, 5, 15, 0.7)])
    assert ap == pytest.approx(0.25)
    assert curve.recalls == [pytest.approx(0.5)]


def test_segment_ap_two_pairs_order_matters():
    gts = [B("q1", "a", 0, 10, 0, 10), B("q2", "b", 0, 10, 20, 30)]
    good = B("q1", "a", 0, 10, 0, 10, 0.9)
    wrong = B("q3", "a", 0, 10, 0, 10, 0.8)  # pair without GT: pure false positive length
    other = B("q2", "b", 0, 10, 20, 30, 0.7)
    # step 1: P=1, R=1/2 ; step 2: R unchanged ; step 3: intersect 20 of 30 predicted -> P=2/3, R=1
    ap, _ = bm.segment_ap(gts, [good, wrong, other])
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # the wrong prediction ranked last costs nothing
    ap2, _ = bm.segment_ap(gts, [good, other, B("q3", "a", 0, 10, 0, 10, 0.1)])
    assert ap2 == pytest.approx(1.0)


def test_segment_ap_prediction_not_overlapping_gt_box():
    # The prediction's query interval overlaps the GT's, but the reference interval does not:
    # the boxes do not overlap, so the GT is not counted at all (zero intersection).
    ap, _ = bm.segment_ap([B("q", "r", 0, 10, 0, 10)], [B("q", "r", 0, 10, 50, 60, 0.9)])
    assert ap == 0.0


def test_localisation_family_and_false_matches():
    gts = [B("q1", "a", 2, 6, 0, 4), B("q2", "b", 0, 4, 0, 4)]
    preds = [B("q1", "a", 2, 8, 0, 6, 0.9), B("q2", "b", 0, 4, 0, 4, 0.1), B("n1", "a", 0, 3, 0, 3, 0.5)]
    ious = bm.localisation_iou(gts, preds, threshold=0.3)
    assert ious == [pytest.approx(4 / 6)]
    scored = bm.pair_scores(preds)
    fam = bm.recall_by_family({("q1", "a"): "crop", ("q2", "b"): "blur"}, scored, 0.3)
    assert fam == {"blur": (0, 1), "crop": (1, 1)}
    assert bm.false_matches(["n1", "n2"], scored, 0.3) == (1, 2)
    assert bm.false_matches(["n1", "n2"], scored, 0.6) == (0, 2)
    assert bm.wrong_reference_pairs({("q1", "a"), ("q2", "b")}, {("q1", "b"): 0.5, **scored}, 0.3, ["n1"]) == 1
    assert not math.isnan(bm.pair_micro_ap({("q1", "a")}, scored))


def test_micro_ap_arrays_equals_pair_micro_ap():
    rng = np.random.default_rng(3)
    gt = {(f"q{i}", "r") for i in range(0, 40, 2)}
    scored = {(f"q{i}", r): float(np.round(rng.random(), 1)) for i in range(40) for r in ("r", "s")}  # many ties
    s = np.array(list(scored.values()))
    p = np.array([k in gt for k in scored])
    assert bm._micro_ap_arrays(s, p, len(gt)) == pytest.approx(bm.pair_micro_ap(gt, scored))


def test_paired_bootstrap_micro_ap():
    queries = [f"q{i}" for i in range(60)]
    gt = {(q, "r") for q in queries[:40]}
    rng = np.random.default_rng(0)
    a = {(q, "r"): float(rng.random()) for q in queries}  # a random ranking
    same = bm.paired_bootstrap_micro_ap(gt, a, dict(a), queries, n=200)
    assert same["diff"] == 0.0 and same["lo"] == 0.0 and same["hi"] == 0.0
    b = {(q, "r"): (1.0 + rng.random() if (q, "r") in gt else rng.random()) for q in queries}  # perfect
    out = bm.paired_bootstrap_micro_ap(gt, a, b, queries, n=200)
    assert out["b"] == pytest.approx(1.0) and out["a"] == pytest.approx(bm.pair_micro_ap(gt, a))
    assert 0.0 < out["lo"] <= out["diff"] <= out["hi"] and out["p_b_below_a"] == 0.0
    # swapped systems: the interval flips sign
    back = bm.paired_bootstrap_micro_ap(gt, b, a, queries, n=200)
    assert back["hi"] < 0 and back["p_b_below_a"] == 1.0
