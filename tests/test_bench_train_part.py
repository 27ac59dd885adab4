"""The benchmark's training part (bench_generate.py --part train): roles from the train split,
look-alike families from training clips and seeds >= 950000, the eval part's draws unchanged.
Planning only (no clip is decoded: clip paths are fake)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_generate as bg  # noqa: E402
import lookalike as la  # noqa: E402


def split_clips(part: str) -> list[dict]:
    with open(BENCH / "clip_split.tsv", newline="") as f:
        return [
            {"name": r["filename"], "path": Path("/nonexistent") / r["filename"], "group": r["dup_group"],
             "duration": float(r["duration_s"])}
            for r in csv.DictReader(f, delimiter="\t") if r["split"] == part
        ]


@pytest.mark.parametrize("part", ["eval", "train"])
def test_reserved_clips_belong_to_their_split(part):
    names = {c["name"] for c in split_clips(part)}
    reserved = la.reserved_clips(part)
    assert reserved and reserved <= names
    if part == "eval":
        assert reserved == la.RESERVED_CLIPS


def test_train_roles():
    clips = split_clips("train")
    main = [c for c in clips if c["name"] not in la.reserved_clips("train")]
    s = bg.PART_SETTINGS["train"]
    for seed in range(5):
        refs, natural, never, hardneg = bg.plan_roles(main, bg.part_rng(seed, "train"), s["n_heldout"],
                                                      s["hard_neg_ref_min_s"])
        used = [c["name"] for c in refs + never + hardneg] + [c["name"] for c, _ in natural]
        assert len(used) == len(set(used)) == len(main)
        assert not set(used) & la.reserved_clips("train")
        assert len(refs) >= 6 and len(never) >= 3 and len(hardneg) >= 2
        assert [(c["name"], r["name"]) for c, r in natural] == [("sleap_centered_pair_lowq.mp4", "sleap_centered_pair.mp4")]
        assert all(r["duration"] >= 3.0 for r in refs)
        assert all(c["duration"] >= 2.5 for c in never)  # fillers


def test_train_lookalike_seeds_and_streams_apart_from_eval():
    def members(part):
        return la.plan(0, {}, lambda p, w: None, part)

    tr, ev = members("train"), members("eval")
    assert [m.name for m in tr] == [m.name for m in ev]  # no clip given: the generated families only
    seeds = [m.meta["seed"] for m in tr if "seed" in m.meta]
    assert seeds and min(seeds) >= 950_000 and max(seeds) < 1_000_000
    assert max(m.meta["seed"] for m in ev if "seed" in m.meta) < 900_000
    t = next(m for m in tr if m.family == "terminal_text").frames()
    e = next(m for m in ev if m.family == "terminal_text").frames()
    assert t.shape == e.shape and not np.array_equal(t, e)


def test_eval_streams_unchanged():
    assert bg.part_rng(3, "eval").integers(2**62) == np.random.default_rng(3).integers(2**62)
    assert bg.part_rng(3, "eval", 1414).integers(2**62) == np.random.default_rng([3, 1414]).integers(2**62)
    assert bg.part_rng(3, "train").integers(2**62) != np.random.default_rng(3).integers(2**62)
