"""Temporal alignment: frame-level similarities -> copied segments (pure numpy).

Where it sits: ... -> search (frame hits) -> **align** -> report.

Given the (score-normalised) similarity matrix between the sampled frames of one query and one
reference, find the chains of matching frames that advance together in time on both timelines,
in the spirit of the temporal network (TN) of VCSL: a hit may follow another when both timelines
move forward, the reference moving between ``min_speed`` and ``max_speed`` times as fast as the
query (tolerating one sampling step of jitter on each side), with gaps of at most ``max_gap``
seconds. Dynamic programming finds the chain with the largest total similarity; its cells are
removed and the search repeats for further segments.

This handles trimmed copies, copies inserted into unrelated footage, speed changes (0.75x-1.33x
and a bit beyond) and different sampling rates of query and reference, because only
presentation times are compared, never frame indices.

A sampled frame stands for the time up to the next sample (its display interval). Where the
reference was sampled more sparsely than the query (keyframe mode: one frame per GOP), several
query frames legitimately match one reference frame; the length rule and the located reference
interval use those intervals, so a short copy of a sparsely sampled reference is neither dropped
nor reported as a zero-length reference segment.

Score of a segment: ``sum(similarity of its hits) / (hits + 1)``, i.e. the mean similarity shrunk
towards 0 for short chains, so a single coincidental frame scores half of its similarity while a
long consistent copy keeps nearly all of it. Scores are in similarity units and do not depend on
any other reference or query, so one global threshold decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError
from vmatch.types import Segment


@dataclass(frozen=True)
class AlignParams:
    """Parameters of the temporal alignment.

    Attributes:
        hit_threshold: cells with a normalised similarity <= this are not hits.
        top_k_per_row: keep at most this many best hits per query frame (bounds the work).
        max_gap: seconds that may separate two consecutive hits of one segment (on each timeline).
        min_speed, max_speed: allowed ratio reference-time / query-time between consecutive hits.
        max_segments: segments returned per (query, reference) pair at most.
        min_segment_score: segments scoring below this are dropped.
        hit_cost: subtracted from every hit's similarity inside the dynamic programme, so that
            chains of barely-positive coincidences do not outgrow a short strong copy.
        min_distinct_frames: a segment must last at least this many query sampling steps on each
            timeline (unless a whole video is shorter), counting each sampled frame for its display
            interval (up to the next sample, at most ``max_gap``): with both videos sampled at the
            same rate this is that many distinct frames on each side, so a chain that stays on one
            reference frame while the query moves on (or the reverse) is a coincidence, not a
            copy — unless that reference frame really stands for that long (a sparsely sampled
            reference, a still image).
    """

    hit_threshold: float = 0.0
    hit_cost: float = 0.05
    min_distinct_frames: int = 2
    top_k_per_row: int = 5
    max_gap: float = 6.0
    min_speed: float = 0.5
    max_speed: float = 2.0
    max_segments: int = 5
    min_segment_score: float = 0.02

    def __post_init__(self) -> None:
        if not (0 < self.min_speed <= 1.0 <= self.max_speed):
            raise UsageError("AlignParams: need 0 < min_speed <= 1 <= max_speed")
        if self.max_gap <= 0:
            raise UsageError("AlignParams: max_gap must be > 0 seconds")
        if self.top_k_per_row < 1 or self.max_segments < 1:
            raise UsageError("AlignParams: top_k_per_row and max_segments must be >= 1")


def _median_step(t: np.ndarray) -> float:
    if t.size < 2:
        return 1.0
    return float(np.median(np.diff(t)))


def _stands_for(t: np.ndarray, step: float, cap: float) -> np.ndarray:
    """How long each sampled frame stands for: up to the next sample (the last one: ``step``),
    at most ``cap`` seconds."""
    d = np.empty_like(t)
    if t.size:
        d[:-1] = np.diff(t)
        d[-1] = step
    return np.minimum(d, cap)


def _reference_interval(
    tq: np.ndarray, tr: np.ndarray, before: np.ndarray, after: np.ndarray, step_q: float,
    min_speed: float, max_speed: float,
) -> tuple[float, float]:
    """The reference interval of a chain whose reference frames were sampled sparsely.

    A query frame matched to the reference frame at ``tr[i]`` shows the reference near that
    frame: closer to it than to its neighbours, i.e. within ``[tr[i] - before[i], tr[i] +
    after[i]]`` (half the spacing to the previous and the next sample). A straight timeline
    ``r(t) = a + s (t - tq[0])`` through those boxes (to half a query step) places the query's
    first and last frames on the reference. The speed ``s`` is the least-squares slope of the
    hits when they touch three reference frames or more (else 1, as most copies keep their
    speed), clipped to ``min_speed..max_speed``; where no line of that speed fits, the nearest
    speed that fits is taken, and ``a`` is the middle of the offsets it allows. Where no line
    fits at all, the hits' own times are kept.
    """
    tol = 0.5 * step_q
    dt = tq - tq[0]
    guess = 1.0
    if np.unique(tr).size >= 3 and np.ptp(dt) > 0:
        guess = float(np.clip(np.polyfit(dt, tr, 1)[0], min_speed, max_speed))
    speeds = np.unique(np.r_[guess, np.linspace(min_speed, max_speed, 33)])
    for sp in speeds[np.argsort(np.abs(speeds - guess), kind="stable")]:
        lo = float(np.max(tr - before - sp * dt)) - tol
        hi = float(np.min(tr + after - sp * dt)) + tol
        if lo <= hi:
            a = 0.5 * (lo + hi)
            start = min(max(a, float(tr[0] - before[0])), float(tr[0] + after[0]))
            end = min(max(a + float(sp * dt[-1]), float(tr[-1] - before[-1]), start), float(tr[-1] + after[-1]))
            return start, end
    return float(tr[0]), float(tr[-1])


def _extract_hits(sim: np.ndarray, params: AlignParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and scores of the hits: top-k cells per row above the hit threshold."""
    n_q, n_r = sim.shape
    k = min(params.top_k_per_row, n_r)
    if k < n_r:
        cols = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    else:
        cols = np.broadcast_to(np.arange(n_r), (n_q, n_r))
    rows = np.repeat(np.arange(n_q), cols.shape[1])
    cols = cols.reshape(-1)
    vals = sim[rows, cols]
    keep = vals > params.hit_threshold
    return rows[keep], cols[keep], vals[keep].astype(np.float64)


def _best_chain(
    tq: np.ndarray,
    tr: np.ndarray,
    val: np.ndarray,
    alive: np.ndarray,
    params: AlignParams,
    step_q: float,
    step_r: float,
    ends_q: np.ndarray,
    ends_r: np.ndarray,
    need_q: float,
    need_r: float,
) -> list[int]:
    """Dynamic programming over hits sorted by query time; returns the best chain's hit indices.

    A hit may follow a predecessor when both timelines advance within ``max_gap`` and the
    reference advances ``min_speed``..``max_speed`` times as fast as the query, both between the
    two hits and from the start of the chain (so small allowed jitters cannot add up to a drift).

    Only chains long enough to be a segment are returned: lasting ``need_q`` / ``need_r`` seconds
    on the two timelines, from the start of their first hit's frame to the end of their last
    one's (``ends_q`` / ``ends_r``: where each hit's sampled frame stops standing). Each hit
    carries two best chains, one not yet that long and one that is, so that a short or frozen
    chain of high similarity (every query frame on one reference frame) cannot hide a slightly
    weaker one that is a copy.
    """
    n = tq.size
    gain = val - params.hit_cost
    single_ok = ((ends_q - tq) >= need_q) & ((ends_r - tr) >= need_r)
    # state 0: chain not yet long enough; state 1: long enough.
    best = np.full((2, n), -np.inf)
    best[0] = np.where(alive & ~single_ok, gain, -np.inf)
    best[1] = np.where(alive & single_ok, gain, -np.inf)
    prev = np.full((2, n), -1, dtype=np.int64)
    prev_state = np.zeros((2, n), dtype=np.int64)
    start = np.tile(np.arange(n), (2, 1))
    starts = np.flatnonzero(np.r_[True, np.diff(tq) > 0])
    ends = np.r_[starts[1:], n]
    lo_ptr = 0
    gap_q = params.max_gap + 0.5 * step_q
    tol_r = step_r + 1e-6
    for s, e in zip(starts, ends):
        t_now = tq[s]
        while lo_ptr < s and tq[lo_ptr] < t_now - gap_q:
            lo_ptr += 1
        if lo_ptr >= s:
            continue
        cur = np.arange(s, e)
        cur = cur[alive[cur]]
        if cur.size == 0:
            continue
        pred = np.arange(lo_ptr, s)
        pred = pred[np.isfinite(best[0, pred]) | np.isfinite(best[1, pred])]
        if pred.size == 0:
            continue
        dq = t_now - tq[pred]  # > 0
        dr = tr[cur][:, None] - tr[pred][None, :]
        step_ok = (
            (dr >= -1e-9)
            & (dr <= params.max_gap + step_r)
            & (dr >= dq[None, :] * params.min_speed - tol_r)
            & (dr <= dq[None, :] * params.max_speed + tol_r)
        )
        cands = []
        for k in (0, 1):
            sp = start[k, pred]
            dq0 = t_now - tq[sp]
            dr0 = tr[cur][:, None] - tr[sp][None, :]
            ok = (
                step_ok
                & (dr0 >= dq0[None, :] * params.min_speed - tol_r)
                & (dr0 <= dq0[None, :] * params.max_speed + tol_r)
            )
            cands.append((ok, best[k, pred][None, :], sp))
        ok0, v0, sp0 = cands[0]
        ok1, v1, _ = cands[1]
        long0 = ((ends_q[cur][:, None] - tq[sp0][None, :]) >= need_q) & (
            (ends_r[cur][:, None] - tr[sp0][None, :]) >= need_r
        )
        rows_c = np.arange(cur.size)
        # Into state 1: from a long chain, or from a short one this hit makes long enough.
        c1a = np.where(ok1, v1, -np.inf)
        c1b = np.where(ok0 & long0, v0, -np.inf)
        j1a, j1b = np.argmax(c1a, axis=1), np.argmax(c1b, axis=1)
        b1a, b1b = c1a[rows_c, j1a], c1b[rows_c, j1b]
        use_b = b1b > b1a
        b1 = np.where(use_b, b1b, b1a)
        take = b1 > 0
        if np.any(take):
            idx = cur[take]
            from_k = np.where(use_b[take], 0, 1)
            chosen = pred[np.where(use_b[take], j1b[take], j1a[take])]
            best[1, idx] = gain[idx] + b1[take]
            prev[1, idx] = chosen
            prev_state[1, idx] = from_k
            start[1, idx] = start[from_k, chosen]
        # Into state 0: a short chain that stays short.
        c0 = np.where(ok0 & ~long0, v0, -np.inf)
        j0 = np.argmax(c0, axis=1)
        b0 = c0[rows_c, j0]
        take = b0 > 0
        if np.any(take):
            idx = cur[take]
            chosen = pred[j0[take]]
            best[0, idx] = gain[idx] + b0[take]
            prev[0, idx] = chosen
            prev_state[0, idx] = 0
            start[0, idx] = start[0, chosen]
    if not np.any(np.isfinite(best[1])):
        return []
    cur_i, k = int(np.argmax(best[1])), 1
    chain = []
    while cur_i >= 0:
        chain.append(cur_i)
        cur_i, k = int(prev[k, cur_i]), int(prev_state[k, cur_i])
    chain.reverse()
    return chain


def _trim_chain(chain: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Drop weak hits at either end of a chain: below half the chain's median similarity.

    The DP maximises the total, so it happily extends a copy by a few coincidental weaker hits
    in the unrelated footage around it; those would stretch the located segment.
    """
    v = vals[chain]
    floor = 0.5 * float(np.median(v))
    strong = np.flatnonzero(v >= floor)
    if strong.size == 0:
        return chain
    return chain[strong[0] : strong[-1] + 1]


def align_pair(
    sim: np.ndarray,
    query_times: np.ndarray,
    reference_times: np.ndarray,
    params: AlignParams = AlignParams(),
) -> list[Segment]:
    """Find copied segments between one query and one reference.

    Args:
        sim: [Nq, Nr] score-normalised similarities (query frames x reference frames).
        query_times: [Nq] presentation times of the query frames (seconds, increasing).
        reference_times: [Nr] presentation times of the reference frames.
        params: alignment parameters.

    Returns:
        Segments sorted by score, best first (possibly empty).

    Example:
        >>> import numpy as np
        >>> s = np.full((6, 6), -0.1); s[np.arange(2, 6), np.arange(0, 4)] = 0.5
        >>> seg = align_pair(s, np.arange(6.0), np.arange(6.0))[0]
        >>> (seg.query_start, seg.query_end, seg.reference_start, seg.reference_end)
        (2.0, 5.0, 0.0, 3.0)
    """
    sim = np.asarray(sim, dtype=np.float32)
    tq_all = np.asarray(query_times, dtype=np.float64)
    tr_all = np.asarray(reference_times, dtype=np.float64)
    if sim.ndim != 2 or sim.shape != (tq_all.size, tr_all.size):
        raise UsageError(
            f"align_pair: similarity matrix {sim.shape} does not match {tq_all.size} query and "
            f"{tr_all.size} reference timestamps"
        )
    if sim.size == 0:
        return []
    rows, cols, vals = _extract_hits(sim, params)
    if rows.size == 0:
        return []
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    tq = tq_all[rows]
    tr = tr_all[cols]
    step_q = _median_step(tq_all)
    step_r = _median_step(tr_all)
    dur_q_all = _stands_for(tq_all, step_q, params.max_gap)
    dur_r_all = _stands_for(tr_all, step_r, params.max_gap)
    dur_r = dur_r_all[cols]
    gap_before = np.minimum(np.diff(tr_all, prepend=tr_all[0] - dur_r_all[0]), params.max_gap)[cols]
    # A segment must last min_distinct_frames query steps on each timeline (less for a whole
    # video that is shorter), a quarter step of timestamp jitter allowed.
    need = params.min_distinct_frames * step_q - 0.25 * step_q
    need_q = min(need, float(tq_all[-1] + dur_q_all[-1] - tq_all[0]) - 1e-9)
    need_r = min(need, float(tr_all[-1] + dur_r_all[-1] - tr_all[0]) - 1e-9)
    sparse_r = dur_r > 1.5 * step_q  # reference frames standing for more than a query step
    ends_q = tq + dur_q_all[rows]
    ends_r = tr + dur_r
    alive = np.ones(rows.size, dtype=bool)
    segments: list[Segment] = []
    for _ in range(4 * params.max_segments):
        if len(segments) >= params.max_segments or not np.any(alive):
            break
        chain = _best_chain(tq, tr, vals, alive, params, step_q, step_r, ends_q, ends_r, need_q, need_r)
        if not chain:
            break
        c = np.asarray(chain)
        alive[c] = False
        c = _trim_chain(c, vals)
        score = float(vals[c].sum()) / (c.size + 1.0)
        if score < params.min_segment_score:
            continue
        lasts_q = float(np.max(ends_q[c]) - np.min(tq[c]))
        lasts_r = float(np.max(ends_r[c]) - np.min(tr[c]))
        if lasts_q < need_q or lasts_r < need_r:
            continue
        ref_start, ref_end = float(tr[c[0]]), float(tr[c[-1]])
        if np.any(sparse_r[c]):
            ref_start, ref_end = _reference_interval(
                tq[c], tr[c], 0.5 * gap_before[c], 0.5 * dur_r[c], step_q, params.min_speed, params.max_speed
            )
        seg = Segment(
            query_start=float(tq[c[0]]),
            query_end=float(tq[c[-1]]),
            reference_start=ref_start,
            reference_end=ref_end,
            score=float(score),
        )
        segments.append(seg)
        # Remove every hit inside the segment's box too: other hits there are the same copy
        # seen through neighbouring frames, not a second copy.
        inside = (
            (tq >= seg.query_start - 1e-9)
            & (tq <= seg.query_end + 1e-9)
            & (tr >= seg.reference_start - step_r)
            & (tr <= seg.reference_end + step_r)
        )
        alive &= ~inside
    segments.sort(key=lambda s: -s.score)
    return segments
