"""Temporal alignment on planted similarity matrices with exact expected answers."""

import numpy as np
import pytest

from vmatch.align import AlignParams, align_pair
from vmatch.errors import UsageError


def _noise(rng, nq, nr):
    return rng.normal(-0.1, 0.05, (nq, nr)).astype(np.float32)


def _plant(sim, tq, tr, q0, q1, r0, speed, value=0.45):
    """Plant a copy: query times [q0, q1] show reference time r0 + (t - q0) * speed."""
    for i, t in enumerate(tq):
        if q0 - 1e-9 <= t <= q1 + 1e-9:
            rt = r0 + (t - q0) * speed
            j = int(np.argmin(np.abs(tr - rt)))
            sim[i, j] = value


@pytest.mark.parametrize("speed", [0.75, 0.8, 1.0, 1.25, 1.33])
def test_speed_change_found_within_one_step(speed):
    rng = np.random.default_rng(1)
    tq, tr = np.arange(40.0), np.arange(60.0)
    sim = _noise(rng, 40, 60)
    _plant(sim, tq, tr, 10, 25, 20, speed)
    segs = align_pair(sim, tq, tr)
    assert segs, "copy not found"
    s = segs[0]
    assert abs(s.query_start - 10) <= 1 and abs(s.query_end - 25) <= 1
    assert abs(s.reference_start - 20) <= 1
    assert abs(s.reference_end - (20 + 15 * speed)) <= 1
    assert s.score > 0.3


def test_different_sampling_rates():
    rng = np.random.default_rng(2)
    tq = np.arange(0, 30, 0.5)  # query sampled at 2 fps
    tr = np.arange(0, 50, 1.0) + 0.04  # reference at 1 fps, offset pts
    sim = _noise(rng, tq.size, tr.size)
    _plant(sim, tq, tr, 5, 20, 12, 1.0)
    s = align_pair(sim, tq, tr)[0]
    assert abs(s.query_start - 5) <= 1 and abs(s.query_end - 20) <= 1
    assert abs(s.reference_start - 12) <= 1 and abs(s.reference_end - 27) <= 1


def test_two_copies_give_two_segments():
    rng = np.random.default_rng(3)
    tq, tr = np.arange(60.0), np.arange(40.0)
    sim = _noise(rng, 60, 40)
    _plant(sim, tq, tr, 2, 12, 5, 1.0)
    _plant(sim, tq, tr, 35, 50, 20, 1.0)
    segs = sorted(align_pair(sim, tq, tr)[:2], key=lambda s: s.query_start)
    assert len(segs) == 2
    assert abs(segs[0].query_start - 2) <= 1 and abs(segs[0].reference_start - 5) <= 1
    assert abs(segs[1].query_start - 35) <= 1 and abs(segs[1].reference_start - 20) <= 1


def test_noise_only_gives_nothing_strong():
    rng = np.random.default_rng(4)
    tq, tr = np.arange(50.0), np.arange(50.0)
    sim = _noise(rng, 50, 50)
    segs = align_pair(sim, tq, tr)
    assert all(s.score < 0.05 for s in segs)


def test_single_coincidence_scores_half_or_is_rejected():
    tq, tr = np.arange(10.0), np.arange(10.0)
    sim = np.full((10, 10), -0.2, np.float32)
    sim[3, 7] = 0.4
    assert align_pair(sim, tq, tr) == []  # default: a segment spans >= 2 frames on each side
    (s,) = align_pair(sim, tq, tr, AlignParams(min_distinct_frames=1))
    assert s.score == pytest.approx(0.2)
    assert (s.query_start, s.reference_start) == (3.0, 7.0)


def test_frozen_reference_frame_is_not_a_copy():
    tq, tr = np.arange(10.0), np.arange(10.0)
    sim = np.full((10, 10), -0.2, np.float32)
    sim[2:5, 6] = 0.4  # three query frames all on one reference frame
    assert align_pair(sim, tq, tr) == []
    sim[5, 7] = 0.4  # ...and then the reference moves on: now a (slow) copy
    assert align_pair(sim, tq, tr)


def test_short_copy_of_a_sparsely_sampled_reference():
    """Keyframe mode samples a reference once per GOP (here every 2 s): a 2-s copy shows one
    reference frame to two 1-fps query frames. It is found, and its reference interval is placed
    around that frame (nearer to it than to its neighbours) with the query's length, not reported
    as a zero-length point."""
    rng = np.random.default_rng(5)
    tq, tr = np.arange(12.0), np.arange(0.0, 20.0, 2.0)
    sim = _noise(rng, tq.size, tr.size)
    sim[3, 2] = 0.6  # query 3 s and 4 s show reference 4 and 5 s (nearest keyframe: 4 s)
    sim[4, 2] = 0.55
    (s,) = [x for x in align_pair(sim, tq, tr) if x.score > 0.3]
    assert (s.query_start, s.query_end) == (3.0, 4.0)
    assert 3.0 <= s.reference_start < s.reference_end <= 5.0
    assert s.reference_end - s.reference_start == pytest.approx(1.0)
    # The same two query frames on one frame of a reference sampled as densely as the query
    # (1 fps) are a frozen frame, not a copy: the reference frame stands for 1 s only.
    tr1 = np.arange(20.0)
    sim1 = _noise(rng, tq.size, tr1.size)
    sim1[3, 4] = 0.6
    sim1[4, 4] = 0.55
    assert all(x.score < 0.3 for x in align_pair(sim1, tq, tr1))


@pytest.mark.parametrize("speed", [0.8, 1.0, 1.25])
def test_copy_of_a_sparsely_sampled_reference_is_placed_on_it(speed):
    """A reference sampled every 2 s, an 8-s copy at 1 fps, at some speed: the reference interval
    comes from a straight timeline through the matched frames, within a second of the truth."""
    rng = np.random.default_rng(6)
    tq, tr = np.arange(20.0), np.arange(0.0, 40.0, 2.0)
    sim = _noise(rng, tq.size, tr.size)
    _plant(sim, tq, tr, 2, 10, 11, speed)  # query 2..10 s shows reference 11 + (t - 2) * speed
    s = max(align_pair(sim, tq, tr), key=lambda x: x.score)
    assert (s.query_start, s.query_end) == (2.0, 10.0)
    assert abs(s.reference_start - 11) <= 1 and abs(s.reference_end - (11 + 8 * speed)) <= 1


def test_frozen_chain_of_higher_similarity_does_not_hide_a_copy():
    """A nearly static 3-s clip: every query frame is a bit closer to the last reference frame, so
    the chain of highest total stays frozen on it (not a copy); the copy that advances through the
    reference, slightly weaker, is still found (raw figures of a benchmark pair)."""
    sim = np.array([[0.555, 0.579, 0.596], [0.505, 0.553, 0.576], [0.507, 0.550, 0.574]], np.float32)
    (s,) = align_pair(sim, np.arange(3.0), np.array([0.0, 1.001, 2.002]))
    assert (s.query_start, s.query_end) == (0.0, 2.0)
    assert s.reference_start < s.reference_end and s.score > 0.4


def test_long_copy_beats_short_of_same_similarity():
    tq, tr = np.arange(30.0), np.arange(30.0)
    a = np.full((30, 30), -0.2, np.float32)
    b = a.copy()
    a[np.arange(5, 25), np.arange(5, 25)] = 0.3
    b[np.arange(5, 7), np.arange(5, 7)] = 0.3
    assert align_pair(a, tq, tr)[0].score > align_pair(b, tq, tr)[0].score


def test_reversed_time_is_not_a_copy():
    tq, tr = np.arange(20.0), np.arange(20.0)
    sim = np.full((20, 20), -0.2, np.float32)
    sim[np.arange(0, 20), np.arange(19, -1, -1)] = 0.4  # reference played backwards
    segs = align_pair(sim, tq, tr)
    assert all(s.query_end - s.query_start <= 1.0 for s in segs)


def test_bad_shapes_and_params():
    with pytest.raises(UsageError):
        align_pair(np.zeros((3, 4)), np.arange(3.0), np.arange(5.0))
    with pytest.raises(UsageError):
        AlignParams(min_speed=1.5)
    assert align_pair(np.zeros((0, 4)), np.zeros(0), np.arange(4.0)) == []
