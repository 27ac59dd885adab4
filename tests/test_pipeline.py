"""The pipeline through the Python API (decode -> embed -> bank -> search -> align -> report).

Real model (EfficientNet-Lite0 + shipped projection + calibrated threshold) unless a test says
otherwise. References are synthetic scenes of distinct seeds; queries hold planted, edited copies
(see ``match_set`` in conftest.py for the truth of each). Every planted copy must be found, ranked
first, scored above the model's threshold and located within one sampling step (1 s) on both
timelines. The bank of the references is built once per session and never modified; tests that
write use their own bank.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MATCH_FPS, MATCH_H, MATCH_REFERENCES, MATCH_W, MatchSet, Planted, scene_clip, write_clip
from vmatch import synth
from vmatch.bank import Bank
from vmatch.decode import sha256_file
from vmatch.embed import FakeEmbedder
from vmatch.errors import VmatchError
from vmatch.match import calibration_for, DEFAULT_UNCALIBRATED_THRESHOLD, match_query
from vmatch.options import DecodeOptions
from vmatch.pipeline import index_videos
from vmatch.sample import embed_video
from vmatch.types import MatchReport

#: One sampling step at the default 1 frame per second, with float slack.
STEP = 1.0 + 1e-6



@pytest.fixture(scope="session")
def ref_bank(tmp_path_factory: pytest.TempPathFactory, match_set: MatchSet) -> Bank:
    """The four references of ``match_set`` indexed at 1 fps with the default (real) model. Read-only."""
    bank = Bank.open(tmp_path_factory.mktemp("pipeline_bank") / "bank", create=True)
    summary = index_videos(bank, list(match_set.references.values()), decode=DecodeOptions(fps=1.0))
    assert summary.failed == [] and summary.videos == 4
    yield bank
    bank.close()


@pytest.fixture(scope="session")
def threshold(ref_bank: Bank) -> float:
    t = calibration_for(ref_bank.embedder()).threshold
    assert 0.05 < t < 0.5, t  # a calibrated threshold, not a placeholder
    return t


def assert_found(report: MatchReport, truth: Planted, threshold: float, *, step: float = STEP) -> None:
    """The planted reference is ranked first, above the threshold, and its best segment is the
    planted interval within ``step`` seconds on both timelines."""
    assert report.error is None
    assert report.matches, f"{truth.query.name}: no match at all (threshold {threshold})"
    top = report.matches[0]
    assert top.reference == truth.reference, [(m.reference, m.score) for m in report.matches]
    assert top.score >= threshold
    assert report.threshold == pytest.approx(threshold)
    seg = top.segments[0]
    got = (seg.query_start, seg.query_end, seg.reference_start, seg.reference_end)
    want = (truth.query_start, truth.query_end, truth.reference_start, truth.reference_end)
    assert np.all(np.abs(np.subtract(got, want)) <= step), f"segment {got} vs planted {want}"
    assert seg.score == pytest.approx(top.score)
    scores = [m.score for m in report.matches]
    assert scores == sorted(scores, reverse=True)


# ------------------------------------------------------------------ planted copies
@pytest.fixture(scope="session")
def planted_reports(match_set, ref_bank) -> dict[str, MatchReport]:
    """``ref_bank.match(query)`` of every planted case (default threshold), computed once."""
    return {case: ref_bank.match(truth.query) for case, truth in match_set.planted.items()}


@pytest.mark.parametrize("case", ["trim", "insert", "slow", "fast", "fps30", "fps15"])
def test_planted_copy_is_found_and_located(case, match_set, planted_reports, threshold):
    """(a) trimmed copy, (b) copy inside unrelated footage, (c) 0.75x / 1.33x speed (the reference
    interval is the whole played interval), (d) 25 -> 30 fps and 25 -> 15 fps."""
    truth = match_set.planted[case]
    report = planted_reports[case]
    assert report.query == str(truth.query)
    assert report.duration == pytest.approx(truth.query_end if case != "insert" else 25.0, abs=0.1)
    assert_found(report, truth, threshold)


def test_planted_copy_queries_list_no_other_reference(match_set, planted_reports):
    """Beside the planted reference, nothing in these queries copies another reference, so no other
    reference may score above the threshold (a match is a claim of copying)."""
    extra = {
        case: [(m.reference, round(m.score, 3)) for m in planted_reports[case].matches
               if m.reference != truth.reference]
        for case, truth in match_set.planted.items()
    }
    assert {case: others for case, others in extra.items() if others} == {}


@pytest.mark.parametrize("case", ["trim", "insert", "fps15"])
def test_query_sampled_faster_than_the_references(case, match_set, ref_bank, threshold):
    """(e) references indexed at 1 fps, query sampled at 2 fps: times, not frame counts, align."""
    truth = match_set.planted[case]
    report = ref_bank.match(truth.query, fps=2)
    # A 2 fps query has frames every 0.5 s; the reference's step is still 1 s.
    assert_found(report, truth, threshold)
    # The rate reaches the decoder: same answer as matching the 2 fps embedding of the file.
    q2 = embed_video(truth.query, ref_bank.embedder(), fps=2)
    assert len(q2) == pytest.approx(2 * q2.duration, abs=1) and q2.duration >= truth.query_end
    assert ref_bank.match(q2).matches == report.matches


def test_query_sampled_at_2fps_really_has_twice_the_frames(match_set, ref_bank):
    """Guards the previous test: the ``fps`` argument reaches the decoder."""
    q = match_set.planted["trim"].query
    one = embed_video(q, ref_bank.embedder(), fps=1)
    two = embed_video(q, ref_bank.embedder(), fps=2)
    assert len(one) == 9 and len(two) == 18
    np.testing.assert_allclose(np.diff(two.timestamps), 0.5, atol=0.05)


# ------------------------------------------------------------------ negatives
@pytest.mark.parametrize("i", [0, 1, 2])
def test_unrelated_query_matches_nothing(i, match_set, ref_bank, threshold):
    """(g) a query of footage that is in no reference gives no match above the threshold; whatever
    the alignment finds with ``min_score=-1`` stays below it."""
    q = match_set.unrelated[i]
    report = ref_bank.match(q)
    assert report.error is None
    assert [(m.reference, round(m.score, 3)) for m in report.matches] == [], f"threshold {threshold}"
    everything = ref_bank.match(q, min_score=-1)
    assert all(m.score < threshold for m in everything.matches)


@pytest.fixture(scope="session")
def slide_set(tmp_path_factory: pytest.TempPathFactory):
    """A reference and an unrelated query that share black frames, the same text slide and a solid
    colour card, with unrelated scenes in between; and a bank holding the reference."""
    d = tmp_path_factory.mktemp("slides")
    W, H, F = MATCH_W, MATCH_H, MATCH_FPS
    black = synth.black_frames(2 * F, W, H)
    slide = synth.text_slide("CHAPTER 7", 3 * F, W, H)
    card = synth.solid_frames((200, 40, 40), 2 * F, W, H)
    ref = write_clip(d / "slides_ref.mp4",
                     synth.concat(black, slide, scene_clip(1401, 0, 6), card, scene_clip(1401, 6, 6)))
    query = write_clip(d / "slides_query.mp4",
                       synth.concat(black, slide, scene_clip(1402, 0, 6), card, scene_clip(1402, 6, 6), slide[:F]))
    bank = Bank.open(d / "bank", create=True)
    summary = index_videos(bank, [ref])
    assert summary.failed == []
    yield ref, query, bank
    bank.close()


def test_black_solid_and_text_slides_do_not_make_a_match(slide_set, threshold):
    """(f) shared black frames, text slide and colour card do not match unrelated videos."""
    ref, query, bank = slide_set
    # Black and the solid card carry no content and are dropped; the slide is embedded (it is
    # what the score normalisation must neutralise), at 2-4 s and at the very end of the query.
    q = embed_video(query, bank.embedder())
    assert q.n_blank == 4 and len(q) == 20 - 4
    assert {2.0, 3.0, 4.0, 19.0} <= set(q.timestamps.tolist())
    stored = bank.reference_embedding("slides_ref")
    assert {2.0, 3.0, 4.0} <= set(stored.timestamps.tolist()) and len(stored) == 15
    # The slide frames of the two videos are near-identical for the CNN...
    raw = q.features[np.isin(q.timestamps, [2.0, 3.0, 4.0])] @ stored.features[:3].T
    assert raw.min() > 0.9
    # ...yet no match.
    report = bank.match(query)
    assert report.matches == (), [(m.reference, m.score, m.segments) for m in report.matches]
    report = bank.match(q)
    assert report.matches == ()


def test_slides_do_not_hide_a_real_copy(slide_set, threshold, tmp_path):
    """Control for the previous test: a query that copies the reference's scenes after the same
    black + slide intro is matched, on the scenes."""
    ref, _, bank = slide_set
    W, H, F = MATCH_W, MATCH_H, MATCH_FPS
    q = write_clip(tmp_path / "copy_after_slide.mp4",
                   synth.concat(synth.black_frames(F, W, H), synth.text_slide("CHAPTER 7", 2 * F, W, H),
                                scene_clip(1401, 0, 6)))
    report = bank.match(q)
    # query 3-9 s shows reference 5-11 s (after its 2 s black + 3 s slide).
    assert_found(report, Planted(q, "slides_ref", 3.0, 9.0, 5.0, 11.0), threshold, step=STEP)


def test_all_black_video_is_refused_and_matches_nothing(tmp_path, threshold):
    """(h) indexing an all-black video fails with a clear error and writes nothing; matching it
    gives an empty match list (not an error)."""
    black = write_clip(tmp_path / "all_black.mp4", synth.black_frames(6 * MATCH_FPS, MATCH_W, MATCH_H))
    # A solid colour card (not grey: the channels differ) is just as blank.
    red = write_clip(tmp_path / "all_red.mp4", synth.solid_frames((200, 40, 40), 3 * MATCH_FPS, MATCH_W, MATCH_H))
    ok = write_clip(tmp_path / "fine.mp4", scene_clip(1501, 0, 5))
    bank = Bank.open(tmp_path / "bank", create=True)
    try:
        errors = []
        summary = index_videos(bank, [black, ok, red], on_error=lambda p, m: errors.append((p, m)))
        assert summary.videos == 1 and summary.frames == 5
        assert [p for p, _ in summary.failed] == [str(black), str(red)] and errors == summary.failed
        for path, (_, msg) in zip((black, red), errors):
            assert str(path) in msg and "blank" in msg and "\n" not in msg
        assert [r.reference for r in bank.list()] == ["fine"]
        gen = bank.generation
        with pytest.raises(VmatchError):
            bank.add(black)
        assert bank.generation == gen and [r.reference for r in bank.list()] == ["fine"]
        assert bank.snapshot().index.ntotal == 5

        report = bank.match(black, min_score=-1)
        assert report.error is None and report.matches == ()
        assert report.duration == pytest.approx(6.0, abs=0.1)
        assert report.threshold == pytest.approx(threshold)
    finally:
        bank.close()


# ------------------------------------------------------------------ bank API through the pipeline
def test_add_with_custom_id_then_replace(tmp_path, match_set, threshold):
    """(i) ``bank.add(path, ref_id=...)`` stores the file under that id; adding another video under
    the same id replaces it everywhere (metadata, frame index, matching)."""
    bravo, delta = match_set.references["ref_bravo"], match_set.references["ref_delta"]
    with Bank.open(tmp_path / "bank", create=True) as bank:
        info = bank.add(bravo, ref_id="my clip")
        assert info.reference == "my clip" and info.n_frames == 30 and info.source_name == "ref_bravo.mp4"
        assert info.sha256 == sha256_file(bravo)
        assert [r.reference for r in bank.list()] == ["my clip"]
        assert bank.match(match_set.planted["insert"].query).matches[0].reference == "my clip"
        bravo_frames = embed_video(bravo, bank.embedder()).features
        assert bank.search(bravo_frames, 1).similarity[:, 0].min() > 0.99

        gen = bank.generation
        info2 = bank.add(delta, ref_id="my clip")
        assert bank.generation > gen
        refs = bank.list()
        assert [(r.reference, r.n_frames, r.sha256) for r in refs] == [("my clip", 20, sha256_file(delta))]
        assert refs[0].source_name == "ref_delta.mp4" and info2.n_frames == 20
        assert bank.snapshot().index.ntotal == 20 and bank.info()["frames"] == 20
        # The old content is gone from the frame search, the new one is found under the same id.
        hits = bank.search(bravo_frames, 1)
        assert hits.similarity[:, 0].max() < 0.9 and set(hits.frame_index[:, 0].tolist()) <= set(range(20))
        truth = match_set.planted["fps15"]
        assert_found(bank.match(truth.query), Planted(truth.query, "my clip", *_times(truth)), threshold)
    with Bank.open(tmp_path / "bank") as bank:  # persisted
        assert [(r.reference, r.n_frames) for r in bank.list()] == [("my clip", 20)]
        assert bank.snapshot().index.ntotal == 20


def _times(p: Planted) -> tuple[float, float, float, float]:
    return p.query_start, p.query_end, p.reference_start, p.reference_end


def test_match_embedding_equals_match_file(match_set, ref_bank):
    """(j) ``Bank.match`` on a VideoEmbedding gives the report of matching the file itself."""
    truth = match_set.planted["insert"]
    emb = embed_video(truth.query, ref_bank.embedder(), fps=1.0)
    for min_score in (None, -1.0):
        by_file = ref_bank.match(truth.query, min_score=min_score)
        by_emb = ref_bank.match(emb, min_score=min_score)
        assert by_emb.query == emb.video_id == "insert" and by_file.query == str(truth.query)
        assert by_emb.matches == by_file.matches
        assert by_emb.duration == by_file.duration and by_emb.threshold == by_file.threshold
    assert len(ref_bank.match(emb, min_score=-1).matches) > len(ref_bank.match(emb).matches) >= 1
    # and match_query is what Bank.match calls
    assert match_query(ref_bank, emb).matches == ref_bank.match(emb).matches


def test_reference_embeddings_are_what_embed_video_gives(match_set, ref_bank):
    """Indexing stores exactly the frames of the file (times of the 1 fps samples, features)."""
    path = match_set.references["ref_delta"]
    fresh = embed_video(path, ref_bank.embedder(), fps=1.0)
    stored = ref_bank.reference_embedding("ref_delta")
    np.testing.assert_array_equal(stored.timestamps, np.arange(20.0))
    np.testing.assert_array_equal(stored.timestamps, fresh.timestamps)
    np.testing.assert_allclose(stored.features, fresh.features, atol=1e-5)
    info = ref_bank.get("ref_delta")
    assert info.n_frames == 20 and info.duration == pytest.approx(20.0, abs=0.05)
    assert info.sha256 == sha256_file(path) and info.extra.get("fps") == 1.0
    assert ref_bank.info()["frames"] == 30 + 30 + 30 + 20
    assert sorted(r.reference for r in ref_bank.list()) == sorted(MATCH_REFERENCES)


# ------------------------------------------------------------------ fake model (fast)
def test_pipeline_with_fake_embedder(tmp_path, match_set):
    """The whole pipeline with the weight-free FakeEmbedder: bank of the fake model, index, match
    planted copies (found and located), reopen (the embedder is rebuilt from the stored spec),
    another model's embedder refused."""
    fake = FakeEmbedder()
    path = tmp_path / "fake_bank"
    bank = Bank.open(path, create=True, model=fake.spec)
    bank.set_embedder(fake)
    refs = list(match_set.references.values())
    summary = index_videos(bank, refs)
    assert summary.videos == 4 and summary.frames == 110 and summary.failed == []
    assert bank.model_id == fake.spec.model_id
    for case in ("insert", "trim"):
        truth = match_set.planted[case]
        report = bank.match(truth.query)
        assert report.threshold == pytest.approx(DEFAULT_UNCALIBRATED_THRESHOLD)
        assert_found(report, truth, DEFAULT_UNCALIBRATED_THRESHOLD)
    bank.close()
    # Reopened, the bank rebuilds its fake embedder from the stored spec (no set_embedder).
    with Bank.open(path) as bank:
        assert type(bank.embedder()).__name__ == "FakeEmbedder"
        assert bank.match(match_set.planted["insert"].query).matches[0].reference == "ref_bravo"
        # An embedder of another model is refused.
        with pytest.raises(VmatchError, match="model"):
            bank.set_embedder(FakeEmbedder(seed=1))
