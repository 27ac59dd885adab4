"""Tests of vmatch.signals.vpdq: vPDQ hashing of generated videos, text formats, match rule, FAISS helpers.

The comparison with Meta's reference needs the ``vpdq`` package (``pip install vpdq``, built from
source against the system FFmpeg); those tests are skipped without it. Everything else runs on
videos generated here with :mod:`vmatch.synth`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmatch import synth
from vmatch.errors import DecodeError, UsageError
from vmatch.signals.pdq import bits_to_hex, hamming, hex_to_bits, pack_bits
from vmatch.signals.vpdq import (
    VPDQ_DISTANCE_THRESHOLD,
    VPDQ_QUALITY_THRESHOLD,
    HammingRange,
    VPDQFrame,
    VPDQMatch,
    build_binary_index,
    from_signal_str,
    from_text,
    hash_video,
    is_match,
    match_vpdq,
    pack_frames,
    range_search_hamming,
    read_file,
    to_signal_str,
    to_text,
    write_file,
)

# A line of the reference's sample-hashes/chair-19-sd-bar.txt (vpdq 0.2.5).
SAMPLE_LINE = "0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def random_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, (n, 256), dtype=np.uint8)


def flip(bits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of one hash's bits with exactly ``k`` bits flipped."""
    out = bits.copy()
    idx = rng.choice(256, size=k, replace=False)
    out[idx] ^= 1
    return out


def frames_of(bits: np.ndarray, qualities: list[int] | None = None) -> list[VPDQFrame]:
    hexes = bits_to_hex(bits)
    qualities = qualities or [100] * len(hexes)
    return [VPDQFrame(i, h, q, float(i)) for i, (h, q) in enumerate(zip(hexes, qualities))]


def reference_match(query: list[VPDQFrame], compared: list[VPDQFrame], quality: int, distance: int):  # type: ignore[no-untyped-def]
    """python-threatexchange's match_VPDQ_hash_brute, transcribed (dedupe, then quality filter)."""

    def dedupe(fs: list[VPDQFrame]) -> list[VPDQFrame]:
        seen: set[str] = set()
        out = []
        for f in fs:
            if f.hex not in seen:
                out.append(f)
                seen.add(f.hex)
        return out

    def qfilter(fs: list[VPDQFrame]) -> list[VPDQFrame]:
        return [f for f in fs if f.quality >= quality]

    def count(a: list[VPDQFrame], b: list[VPDQFrame]) -> int:
        return sum(any(hamming(x.hex, y.hex) <= distance for y in b) for x in a)

    fq, fc = qfilter(dedupe(query)), qfilter(dedupe(compared))
    return count(fq, fc) * 100 / len(fq), count(fc, fq) * 100 / len(fc)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated clips (320x240, 25 fps): an original, a re-encode of it at another CRF and size of
    GOP, an unrelated video, and a 29.97 fps clip."""
    d = tmp_path_factory.mktemp("vpdq")
    frames = synth.scene_frames(11, width=320, height=240, n_frames=250, fps=25.0, scene_seconds=2.5)
    other = synth.scene_frames(12, width=320, height=240, n_frames=250, fps=25.0, scene_seconds=2.5)
    ntsc = synth.scene_frames(13, width=160, height=120, n_frames=180, fps=30000 / 1001)
    return {
        "original": synth.write_video(d / "original.mp4", frames, fps=25, crf=18),
        "reencoded": synth.write_video(d / "reencoded.mp4", frames, fps=25, crf=34, gop=50),
        "other": synth.write_video(d / "other.mp4", other, fps=25, crf=18),
        "ntsc": synth.write_video(d / "ntsc.mp4", ntsc, fps=Fraction(30000, 1001), crf=18),
    }


# --------------------------------------------------------------------------------------------------
# VPDQFrame
# --------------------------------------------------------------------------------------------------


def test_frame_canonical_and_validated() -> None:
    f = VPDQFrame(np.int64(3), "AB" * 32, np.int32(90), np.float32(0.5))  # type: ignore[arg-type]
    assert (f.frame_number, f.hex, f.quality, f.timestamp) == (3, "ab" * 32, 90, 0.5)
    assert type(f.frame_number) is int and type(f.quality) is int and type(f.timestamp) is float
    assert f == VPDQFrame(3, "ab" * 32, 90, 0.5)
    for bad in [
        dict(frame_number=-1),
        dict(frame_number=1.5),
        dict(hex="ab" * 31),
        dict(hex="zz" * 32),
        dict(quality=101),
        dict(quality=-1),
        dict(quality=True),
        dict(timestamp=-0.1),
        dict(timestamp=float("nan")),
        dict(timestamp="1.0"),
    ]:
        kwargs = dict(frame_number=0, hex="00" * 32, quality=50, timestamp=0.0) | bad
        with pytest.raises(UsageError, match="VPDQFrame"):
            VPDQFrame(**kwargs)  # type: ignore[arg-type]


def test_pack_frames_is_pack_bits() -> None:
    bits = random_bits(np.random.default_rng(0), 5)
    assert np.array_equal(pack_frames(frames_of(bits)), pack_bits(bits))
    assert pack_frames([]).shape == (0, 32)


# --------------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------------


def test_text_format_is_the_reference_hash_file() -> None:
    frames = from_text(SAMPLE_LINE + "\n")
    assert frames == [VPDQFrame(0, SAMPLE_LINE.split(",")[2], 100, 0.0)]
    assert to_text(frames) == SAMPLE_LINE + "\n"
    f = VPDQFrame(25, "0f" * 32, 49, 1.0 / 3.0)
    assert to_text([f]) == f"25,49,{'0f' * 32},0.333\n"
    assert to_text([]) == ""


def test_text_round_trip() -> None:
    rng = np.random.default_rng(1)
    bits = random_bits(rng, 40)
    frames = [
        VPDQFrame(i * 30, h, int(q), round(i * 30 / 29.97, 3))
        for i, (h, q) in enumerate(zip(bits_to_hex(bits), rng.integers(0, 101, 40)))
    ]
    text = to_text(frames)
    assert from_text(text) == frames
    assert to_text(from_text(text)) == text
    # Windows line ends, blank lines, upper-case hex and spaces are accepted.
    messy = "\r\n".join(
        [" " + line.upper().replace(",", " , ") for line in text.splitlines()] + ["", "  "]
    )
    assert from_text(messy) == frames
    # Timestamps not on the millisecond grid round-trip to 3 decimals.
    g = VPDQFrame(7, bits_to_hex(bits[:1])[0], 100, 0.2336)
    assert from_text(to_text([g]))[0].timestamp == 0.234


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("0,100,abc,0.000", "PDQ hash 'abc' is not 64 hex digits"),
        (f"0,100,{'g' * 64},0.000", "not 64 hex digits"),
        (f"x,100,{'a' * 64},0.000", "frame number 'x' is not an integer"),
        (f"-1,100,{'a' * 64},0.000", "frame number -1 is negative"),
        (f"0,101,{'a' * 64},0.000", "quality 101 is outside 0..100"),
        (f"0,high,{'a' * 64},0.000", "quality 'high' is not an integer"),
        (f"0,100,{'a' * 64},-1.0", "timestamp '-1.0' must be"),
        (f"0,100,{'a' * 64},nan", "timestamp 'nan' must be"),
        (f"0,100,{'a' * 64},soon", "timestamp 'soon' is not a number"),
        (f"0,100,{'a' * 64}", "expected 4 comma-separated fields"),
        (f"{'a' * 64},100,0.0", "python-threatexchange"),
        (f"0,100,{'a' * 64},0.0,extra", "got 5"),
    ],
)
def test_from_text_errors_name_the_line(line: str, pattern: str) -> None:
    good = f"0,100,{'a' * 64},0.000"
    text = "\n".join([good, "", line, good])
    with pytest.raises(UsageError, match=pattern) as info:
        from_text(text, source="hashes.txt")
    assert str(info.value).startswith("hashes.txt: line 3:")


def test_from_text_refuses_non_text() -> None:
    with pytest.raises(UsageError, match="expected vPDQ text"):
        from_text(b"0,100,...")  # type: ignore[arg-type]


def test_signal_str_is_python_threatexchange_format() -> None:
    h = "f" * 64
    frames = [VPDQFrame(0, h, 100, 0.0), VPDQFrame(30, h, 55, 12.345), VPDQFrame(99, h, 3, 123.4)]
    s = to_signal_str(frames)
    # vpdq_to_json: json.dumps of VpdqCompactFeature.__str__ (f"{t:.3}", 3 significant digits).
    assert s == f'["{h},100,0.0", "{h},55,12.3", "{h},3,1.23e+02"]'
    back = from_signal_str(s)
    assert [(f.frame_number, f.hex, f.quality) for f in back] == [(0, h, 100), (1, h, 55), (2, h, 3)]
    assert [f.timestamp for f in back] == [0.0, 12.3, 123.0]
    assert to_signal_str(back) == s
    assert from_signal_str("") == [] and from_signal_str("[]") == []


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{", "invalid JSON"),
        ('{"a": 1}', "JSON array"),
        ('["' + "a" * 64 + ',100,0.0", 5]', "item 2: expected a 'hex,quality,timestamp' string"),
        ('["' + "a" * 64 + ',100"]', "item 1: expected 'hex,quality,timestamp'"),
        ('["' + "a" * 63 + ',100,0.0"]', "item 1: PDQ hash"),
        ('["' + "a" * 64 + ',200,0.0"]', "item 1: quality 200"),
    ],
)
def test_from_signal_str_errors(text: str, pattern: str) -> None:
    with pytest.raises(UsageError, match=pattern) as info:
        from_signal_str(text, source="sig.json")
    assert str(info.value).startswith("sig.json")


def test_write_and_read_files(tmp_path: Path) -> None:
    frames = frames_of(random_bits(np.random.default_rng(2), 4), [100, 20, 70, 50])
    p = write_file(tmp_path / "a.txt", frames)
    assert p.read_text() == to_text(frames)
    assert read_file(p) == frames
    q = write_file(tmp_path / "a.json", frames, format="signal")
    assert json.loads(q.read_text()) == json.loads(to_signal_str(frames))
    assert read_file(q) == frames  # frame numbers 0..3 and integer timestamps survive
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(DecodeError, match="missing.txt.*does not exist"):
        read_file(tmp_path / "missing.txt")
    with pytest.raises(DecodeError, match="is a directory"):
        read_file(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text(to_text(frames) + "garbage\n")
    with pytest.raises(UsageError, match=r"bad.txt: line 5"):
        read_file(bad)
    with pytest.raises(UsageError, match="format"):
        write_file(tmp_path / "x", frames, format="csv")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Match rule
# --------------------------------------------------------------------------------------------------


def test_match_counts_on_constructed_hashes() -> None:
    rng = np.random.default_rng(3)
    ref_bits = random_bits(rng, 5)  # random hashes are ~128 bits apart
    reference = frames_of(ref_bits)
    q_bits = np.stack(
        [
            ref_bits[0],  # identical: match
            flip(ref_bits[1], 31, rng),  # exactly at the threshold: match (inclusive)
            flip(ref_bits[2], 32, rng),  # one bit too far: no match
            random_bits(rng, 1)[0],  # unrelated: no match
            flip(ref_bits[3], 10, rng),  # low quality: not counted at all
        ]
    )
    query = frames_of(q_bits, [100, 90, 60, 100, 49])
    m = match_vpdq(query, reference)
    assert isinstance(m, VPDQMatch)
    # Query: 4 frames counted, 2 matched. Reference: 5 frames, 0 and 1 matched.
    assert (m.n_query, m.n_query_matched, m.n_compared, m.n_compared_matched) == (4, 2, 5, 2)
    assert m.query_match_percent == 50.0
    assert m.compared_match_percent == 40.0
    assert not is_match(m)
    assert is_match(m, query_match_threshold=50.0)
    assert not is_match(m, query_match_threshold=50.0, compared_match_threshold=40.1)
    # Swapping the roles swaps the percentages.
    r = match_vpdq(reference, query)
    assert (r.query_match_percent, r.compared_match_percent) == (40.0, 50.0)
    # Thresholds: 32 bits now match; quality 49 frames now count.
    assert match_vpdq(query, reference, distance_threshold=32).n_query_matched == 3
    m2 = match_vpdq(query, reference, quality_threshold=49)
    assert (m2.n_query, m2.n_query_matched) == (5, 3)
    assert m2.query_match_percent == 60.0


def test_match_dedupes_before_the_quality_filter() -> None:
    rng = np.random.default_rng(4)
    bits = random_bits(rng, 3)
    hexes = bits_to_hex(bits)
    # The first occurrence of hexes[0] has quality 10: deduplication keeps it, then the quality
    # filter drops it, so hexes[0] is not counted even though a later copy has quality 100.
    query = [
        VPDQFrame(0, hexes[0], 10, 0.0),
        VPDQFrame(1, hexes[0], 100, 1.0),
        VPDQFrame(2, hexes[1], 100, 2.0),
        VPDQFrame(3, hexes[1], 100, 3.0),
        VPDQFrame(4, hexes[2], 100, 4.0),
    ]
    reference = [VPDQFrame(0, hexes[1], 100, 0.0)]
    m = match_vpdq(query, reference)
    assert (m.n_query, m.n_query_matched) == (2, 1)
    assert m.query_match_percent == 50.0 and m.compared_match_percent == 100.0
    assert (m.query_match_percent, m.compared_match_percent) == reference_match(query, reference, 50, 31)


def test_match_agrees_with_transcribed_reference_on_random_sets() -> None:
    rng = np.random.default_rng(5)
    for trial in range(20):
        base = random_bits(rng, int(rng.integers(1, 12)))
        ref_bits = np.stack([flip(b, int(rng.integers(0, 40)), rng) for b in base])
        q_bits = np.stack(
            [flip(base[int(rng.integers(len(base)))], int(rng.integers(20, 44)), rng) for _ in range(15)]
        )
        if trial % 3 == 0:  # duplicates
            q_bits = np.concatenate([q_bits, q_bits[:4]])
        query = frames_of(q_bits, [int(v) for v in rng.integers(30, 101, len(q_bits))])
        reference = frames_of(ref_bits, [int(v) for v in rng.integers(30, 101, len(ref_bits))])
        try:
            want = reference_match(query, reference, VPDQ_QUALITY_THRESHOLD, VPDQ_DISTANCE_THRESHOLD)
        except ZeroDivisionError:
            continue
        m = match_vpdq(query, reference)
        assert (m.query_match_percent, m.compared_match_percent) == want


def test_match_large_sets_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import vmatch.signals.vpdq_match as mod  # where match_vpdq reads it

    rng = np.random.default_rng(6)
    ref_bits = random_bits(rng, 300)
    q_bits = np.concatenate([np.stack([flip(b, 20, rng) for b in ref_bits[:150]]), random_bits(rng, 150)])
    full = match_vpdq(frames_of(q_bits), frames_of(ref_bits))
    monkeypatch.setattr(mod, "_MATCH_CHUNK_BYTES", 1000)  # a few query rows at a time
    chunked = match_vpdq(frames_of(q_bits), frames_of(ref_bits))
    assert full == chunked
    assert (full.query_match_percent, full.compared_match_percent) == (50.0, 50.0)


def test_match_without_numpy_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(10)
    ref_bits = random_bits(rng, 20)
    q_bits = np.stack([flip(b, int(k), rng) for b, k in zip(ref_bits, rng.integers(25, 38, 20))])
    want = match_vpdq(frames_of(q_bits), frames_of(ref_bits))
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # numpy < 2: lookup-table popcount
    assert match_vpdq(frames_of(q_bits), frames_of(ref_bits)) == want


def test_match_empty_and_bad_arguments() -> None:
    frames = frames_of(random_bits(np.random.default_rng(7), 2))
    low = [VPDQFrame(0, frames[0].hex, 10, 0.0)]
    assert match_vpdq([], frames) == VPDQMatch(0.0, 0.0, 0, 2, 0, 0)
    assert match_vpdq(low, frames).query_match_percent == 0.0  # nothing left: 0, not ZeroDivisionError
    with pytest.raises(UsageError, match="distance_threshold"):
        match_vpdq(frames, frames, distance_threshold=300)
    with pytest.raises(UsageError, match="distance_threshold"):
        match_vpdq(frames, frames, distance_threshold=3.5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="quality_threshold"):
        match_vpdq(frames, frames, quality_threshold="50")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not a VPDQFrame"):
        match_vpdq(["a" * 64], frames)  # type: ignore[list-item]
    with pytest.raises(UsageError, match="expected a VPDQMatch"):
        is_match((90.0, 90.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# FAISS binary index
# --------------------------------------------------------------------------------------------------


def test_faiss_distances_equal_hamming_and_radius_is_inclusive() -> None:
    rng = np.random.default_rng(8)
    base = random_bits(rng, 40)
    near = np.stack([flip(base[i], k, rng) for i, k in enumerate([0, 1, 30, 31, 32, 33] * 2)])
    index_bits = np.concatenate([base, near])
    index = build_binary_index(pack_bits(index_bits))
    assert index.ntotal == len(index_bits)
    queries = base[:12]
    res = range_search_hamming(index, pack_bits(queries), radius=31)
    assert isinstance(res, HammingRange) and len(res) == 12
    index_hex = bits_to_hex(index_bits)
    for i, qh in enumerate(bits_to_hex(queries)):
        brute = sorted((hamming(qh, h), j) for j, h in enumerate(index_hex) if hamming(qh, h) <= 31)
        ids, dist = res.hits(i)
        assert [(int(d), int(j)) for d, j in zip(dist, ids)] == brute
    # Distance exactly 31 is found, 32 is not.
    found = {int(j) for j in res.ids}
    assert 40 + 3 in found and 40 + 4 not in found
    # All pairwise distances from a k-NN search equal hamming().
    dist, ids = index.search(pack_bits(queries), len(index_bits))
    for i, qh in enumerate(bits_to_hex(queries)):
        for d, j in zip(dist[i], ids[i]):
            assert int(d) == hamming(qh, index_hex[int(j)])


def test_faiss_helpers_edge_cases() -> None:
    empty = build_binary_index(np.zeros((0, 32), np.uint8))
    res = range_search_hamming(empty, pack_bits(random_bits(np.random.default_rng(9), 3)))
    assert list(res.lims) == [0, 0, 0, 0] and len(res.ids) == 0
    with pytest.raises(UsageError, match="packed hashes"):
        build_binary_index(np.zeros((2, 256), np.uint8))
    with pytest.raises(UsageError, match="radius"):
        range_search_hamming(empty, np.zeros((1, 32), np.uint8), radius=-1)
    with pytest.raises(UsageError, match="binary index"):
        range_search_hamming("index", np.zeros((1, 32), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="out of range"):
        res.hits(3)


# --------------------------------------------------------------------------------------------------
# Hashing videos
# --------------------------------------------------------------------------------------------------


def test_hash_video_samples_once_a_second(videos: dict[str, Path]) -> None:
    frames = hash_video(videos["original"])
    assert len(frames) == 10
    assert [f.frame_number for f in frames] == [25 * i for i in range(10)]
    assert [f.timestamp for f in frames] == pytest.approx([float(i) for i in range(10)], abs=1e-6)
    assert all(f.quality >= VPDQ_QUALITY_THRESHOLD for f in frames)
    half = hash_video(videos["original"], seconds_per_hash=0.5, batch=3, sampling="time")
    assert len(half) == 20 and half[::2] == frames
    # The reference's rule: every int(0.5 * 25) = 12th frame, timestamps float32(n) / float32(fps).
    ref_half = hash_video(videos["original"], seconds_per_hash=0.5)
    assert [f.frame_number for f in ref_half] == list(range(0, 250, 12))
    assert ref_half[10].timestamp == float(np.float32(120) / np.float32(25.0)) == 4.800000190734863
    every = hash_video(videos["original"], seconds_per_hash=0, batch=100)
    assert [f.frame_number for f in every] == list(range(250))
    assert every[::25] == frames
    assert hash_video(videos["original"], prefetch=False) == frames
    # At an integer frame rate both samplings take the same frames.
    assert hash_video(videos["original"], sampling="time") == frames


def test_hash_video_reencoded_copy_matches_and_other_video_does_not(videos: dict[str, Path]) -> None:
    original = hash_video(videos["original"])
    copy = hash_video(videos["reencoded"])
    other = hash_video(videos["other"])
    m = match_vpdq(copy, original)
    assert m.query_match_percent >= 80.0 and is_match(m)
    assert match_vpdq(original, copy).query_match_percent >= 80.0
    for a, b in ((other, original), (original, other)):
        n = match_vpdq(a, b)
        assert n.query_match_percent < 80.0 and not is_match(n)
    # Round trip through the text format keeps the match.
    assert match_vpdq(from_text(to_text(copy)), original) == m
    # skip_nonref: same number of hashes, some taken from a neighbouring (reference) frame. The
    # generated scenes move fast, so neighbours can be > 31 bits apart: only half must still match.
    skipped = hash_video(videos["reencoded"], sampling="time", skip_nonref=True)
    assert len(skipped) == len(copy)
    assert all(abs(a.timestamp - b.timestamp) <= 0.5 for a, b in zip(skipped, copy))
    assert match_vpdq(skipped, original).query_match_percent >= 50.0


def test_hash_video_vpdq_sampling_at_2997_fps(videos: dict[str, Path]) -> None:
    # The reference keeps every int(29.97) = 29th frame; time sampling keeps one a second.
    ref_like = hash_video(videos["ntsc"])
    assert [f.frame_number for f in ref_like] == list(range(0, 180, 29))
    assert [f.timestamp for f in ref_like] == pytest.approx([n * 1001 / 30000 for n in range(0, 180, 29)])
    # The frame on screen at t = k s: frame floor(k * 29.97) (frame 179 lasts until 6.006 s).
    timed = hash_video(videos["ntsc"], sampling="time")
    numbers = [0, 29, 59, 89, 119, 149, 179]
    assert [f.frame_number for f in timed] == numbers
    assert [f.timestamp for f in timed] == pytest.approx([n * 1001 / 30000 for n in numbers])
    assert [(f.hex, f.quality) for f in ref_like[:2]] == [(f.hex, f.quality) for f in timed[:2]]
    every = hash_video(videos["ntsc"], seconds_per_hash=0)
    assert [f.frame_number for f in every] == list(range(180))
    assert every[::29] == ref_like


def test_hash_video_rotation_and_damage(tmp_path: Path) -> None:
    frames = synth.scene_frames(14, width=128, height=96, n_frames=75, fps=25.0)
    plain = synth.write_video(tmp_path / "plain.mp4", frames, fps=25, crf=18)
    rotated = synth.write_video(tmp_path / "rotated.mp4", frames, fps=25, crf=18, rotation=90)
    # The reference hashes frames as stored, ignoring rotation metadata; time sampling shows them upright.
    assert hash_video(rotated) == hash_video(plain)
    upright = hash_video(rotated, sampling="time")
    assert match_vpdq(upright, hash_video(plain)).query_match_percent == 0.0
    # A file cut short (moov first, so the start stays readable) gives the frames before the cut.
    whole = synth.write_video(
        tmp_path / "whole.mp4", frames, fps=25, crf=18, container_options={"movflags": "+faststart"}
    )
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    full = hash_video(whole)
    for sampling in ("vpdq", "time"):
        part = hash_video(cut, sampling=sampling)  # type: ignore[arg-type]
        assert 1 <= len(part) < len(full)
        assert all(hamming(a.hex, b.hex) <= 8 for a, b in zip(part, full))


def test_hash_video_errors(tmp_path: Path, videos: dict[str, Path]) -> None:
    with pytest.raises(DecodeError, match="nope.mp4"):
        hash_video(tmp_path / "nope.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 10)
    with pytest.raises(DecodeError, match="notes.mp4"):
        hash_video(text)
    with pytest.raises(DecodeError, match="notes.mp4"):
        hash_video(text, sampling="vpdq")
    v = videos["original"]
    for kwargs, pattern in [
        (dict(seconds_per_hash=-1), "seconds_per_hash"),
        (dict(seconds_per_hash=float("inf")), "seconds_per_hash"),
        (dict(seconds_per_hash="1s"), "seconds_per_hash"),
        (dict(batch=0), "batch"),
        (dict(sampling="pts"), "sampling"),
        (dict(skip_nonref=True, sampling="vpdq"), "skip_nonref"),
        (dict(threads=-1), "threads"),
        (dict(device="tpu"), "device"),
    ]:
        with pytest.raises(UsageError, match=pattern):
            hash_video(v, **kwargs)  # type: ignore[arg-type]


def test_hash_video_stops_cleanly_on_errors(videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import vmatch.signals.vpdq_hash as mod  # where hash_video looks it up

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("hashing failed")

    before = threading.active_count()
    monkeypatch.setattr(mod, "pdq_hash_batch", boom)
    with pytest.raises(RuntimeError, match="hashing failed"):
        hash_video(videos["original"], batch=2)
    assert threading.active_count() == before  # the decoding thread was stopped and joined


# --------------------------------------------------------------------------------------------------
# Against Meta's reference (optional)
# --------------------------------------------------------------------------------------------------


def _compare_with_reference(ours: list[VPDQFrame], ref: list, fps: float) -> float:  # type: ignore[type-arg]
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert abs(a.timestamp - b.timestamp) <= 1.0 / fps + 1e-6
        assert abs(a.frame_number - b.frame_number) <= 1
    pairs = [(a, b) for a, b in zip(ours, ref) if b.quality >= VPDQ_QUALITY_THRESHOLD]
    assert pairs
    close = sum(hamming(a.hex, b.hex) <= 8 for a, b in pairs)
    return close / len(pairs)


def test_same_hashes_as_reference_vpdq(videos: dict[str, Path], tmp_path: Path) -> None:
    vpdq = pytest.importorskip("vpdq")
    for name, fps in (("original", 25.0), ("reencoded", 25.0)):
        ref = vpdq.computeHash(str(videos[name]), seconds_per_hash=1.0)
        ours = hash_video(videos[name])
        assert [(a.frame_number, a.timestamp) for a in ours] == [(b.frame_number, b.timestamp) for b in ref]
        assert [a.quality for a in ours] == [b.quality for b in ref]
        assert _compare_with_reference(ours, ref, fps) >= 0.95
        timed = hash_video(videos[name], sampling="time")
        assert _compare_with_reference(timed, ref, fps) >= 0.95
    ref = vpdq.computeHash(str(videos["ntsc"]), seconds_per_hash=1.0)
    ours = hash_video(videos["ntsc"])
    assert [a.frame_number for a in ours] == [b.frame_number for b in ref]
    assert _compare_with_reference(ours, ref, 30000 / 1001) >= 0.95
    # Hashes read back from the reference's own text form give the same match.
    ref_frames = from_text("".join(f"{b.frame_number},{b.quality},{b.hex},{b.timestamp:.3f}\n" for b in ref))
    assert match_vpdq(ours, ref_frames).query_match_percent == 100.0
    # Rotation metadata is ignored by both.
    frames = synth.scene_frames(15, width=128, height=96, n_frames=75, fps=25.0)
    rotated = synth.write_video(tmp_path / "rotated.mp4", frames, fps=25, crf=18, rotation=90)
    ref = vpdq.computeHash(str(rotated), seconds_per_hash=1.0)
    assert _compare_with_reference(hash_video(rotated), ref, 25.0) >= 0.95


def test_reference_bits_equal_hex_to_bits() -> None:
    # The hex form is the one the reference prints (Hash256::format): bits most significant first.
    h = SAMPLE_LINE.split(",")[2]
    assert bits_to_hex(hex_to_bits(h))[0] == h
    assert pack_frames(from_text(SAMPLE_LINE)).tobytes() == bytes.fromhex(h)


_ = Callable  # typing helper kept for fixtures' annotations
