"""Tests of vmatch.decode: timestamps, sampling, containers, rotation, sizes, bad inputs, scanning."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmatch import synth
from vmatch.decode import (
    MAX_SIDE,
    VIDEO_EXTENSIONS,
    check_frame_size,
    find_videos,
    iter_frames,
    probe,
    sha256_file,
)
from vmatch.errors import DecodeError, UsageError


def _times(path: Path, **kwargs) -> list[float]:
    return [t for t, _ in iter_frames(path, **kwargs)]


def _on_screen(times: list[float], fps: float, end: float) -> list[float]:
    """Expected sample times: for each target k/fps < end, the last frame time <= target,
    each frame at most once."""
    out: list[float] = []
    k = 0
    while k / fps < end - 1e-9:
        target = k / fps
        cand = [t for t in times if t <= target + 1e-9]
        if cand and (not out or cand[-1] != out[-1]):
            out.append(cand[-1])
        k += 1
    return out


def _pattern(height: int, width: int) -> np.ndarray:
    """Asymmetric test card: white block top-left, red block right of it, grey elsewhere."""
    img = np.full((height, width, 3), 60, np.uint8)
    img[: height // 3, : width // 3] = 255
    img[: height // 3, width // 3 : 2 * width // 3] = (255, 0, 0)
    return img


# ------------------------------------------------------------------ timestamps and sampling


def test_vfr_timestamps_come_from_pts(vfr_video: tuple[Path, list[float]]) -> None:
    path, times = vfr_video
    got = _times(path, fps=1000.0, size=(16, 16))
    assert len(got) == len(times)
    assert np.allclose(got, times, atol=1e-3)
    # At 4 fps each target takes the frame on screen then; frame times are kept as they are.
    end = times[-1] + 1 / 10  # write_video gives the last frame a duration of 1/fps
    got4 = _times(path, fps=4.0, size=(16, 16))
    assert np.allclose(got4, _on_screen(times, 4.0, end), atol=1e-3)


def test_1fps_sampling_of_25fps_video(make_video: Callable[..., Path]) -> None:
    path = make_video("cfr25.mp4", seconds=3.0, fps=25)
    frames = list(iter_frames(path, fps=1.0))
    assert [round(t, 6) for t, _ in frames] == [0.0, 1.0, 2.0]
    assert all(rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8 for _, rgb in frames)


def test_1fps_sampling_of_ntsc_video(make_video: Callable[..., Path]) -> None:
    rate = Fraction(30000, 1001)
    path = make_video("ntsc.mp4", seconds=3.5, fps=rate)
    got = _times(path, fps=1.0, size=(16, 16))
    # Frame k is at k*1001/30000 s; on screen at t=1 s is frame 29 (0.9676 s), not frame 30.
    expected = [0.0] + [(30 * s - 1) * 1001 / 30000 for s in (1, 2, 3)]
    assert np.allclose(got, expected, atol=1e-4)


def test_fps_higher_than_video_rate_yields_each_frame_once(make_video: Callable[..., Path]) -> None:
    path = make_video("cfr10.mkv", seconds=2.0, fps=10)
    got = _times(path, fps=37.0, size=(16, 16))
    assert np.allclose(got, np.arange(20) / 10, atol=1e-3)


def test_start_and_max_frames(make_video: Callable[..., Path]) -> None:
    path = make_video("cfr25_6s.mp4", seconds=6.0, fps=25, gop=25)
    full = dict(iter_frames(path, fps=2.0, size=(32, 32)))
    part = list(iter_frames(path, fps=2.0, size=(32, 32), start=2.5))
    # Targets 2.5, 3.0, ...: at 2.5 s the frame on screen is frame 62 (2.48 s).
    assert [round(t, 6) for t, _ in part] == [2.48, 3.0, 3.48, 4.0, 4.48, 5.0, 5.48]
    for t, rgb in part:  # the same pixels as decoding from the start (seek is exact)
        assert np.array_equal(rgb, full[t])
    assert len(list(iter_frames(path, fps=2.0, max_frames=3))) == 3


def test_skip_nonref_still_gives_increasing_times(make_video: Callable[..., Path]) -> None:
    path = make_video("cfr25_4s.mp4", seconds=4.0, fps=25)
    got = _times(path, fps=1.0, size=(32, 32), skip_nonref=True, threads=1)
    assert len(got) == 4
    assert all(b > a for a, b in zip(got, got[1:]))
    assert all(abs(t - round(t)) < 0.2 for t in got)


def test_skip_loop_filter_gives_nearby_pixels(make_video: Callable[..., Path]) -> None:
    # H.264 is deblocked in its decoding loop (I-frames too): without the filter the frames differ a little,
    # by an error that stays small over a 4-s GOP, at the same sample times.
    path = make_video("h264_lf.mp4", seconds=4.0, fps=25, width=160, height=96, codec="libx264", crf=23,
                      gop=100, codec_options={"bf": "0"})
    plain = list(iter_frames(path, fps=1.0, size=None, threads=1))
    fast = list(iter_frames(path, fps=1.0, size=None, threads=1, skip_loop_filter=True))
    assert [t for t, _ in fast] == [t for t, _ in plain] and len(plain) == 4
    diffs = [float(np.abs(a.astype(np.int16) - b).mean()) for (_, a), (_, b) in zip(plain, fast)]
    assert max(diffs) > 0.05  # the option reached the decoder
    assert max(diffs) < 8.0  # and the frames stay close (measured 1.0-2.5 grey levels here)


def test_keyframe_mode_decodes_short_gops_as_their_keyframe(make_video: Callable[..., Path]) -> None:
    # 10 s at 25 fps with a keyframe every 5 s: with keyframe_gop=6 each GOP is its keyframe alone,
    # on screen until the next one (the last until the end of the file).
    path = make_video("gop5.mp4", seconds=10.0, fps=25, gop=125, codec_options={"bf": "0", "sc_threshold": "0"})
    assert _times(path, fps=1.0, size=(32, 32)) == pytest.approx(list(range(10)), abs=1e-6)
    fast = list(iter_frames(path, fps=1.0, size=(32, 32), keyframe_gop=6.0))
    assert [t for t, _ in fast] == pytest.approx([0.0, 5.0], abs=1e-6)
    exact = dict(iter_frames(path, fps=1.0, size=(32, 32)))
    for t, rgb in fast:  # the keyframes themselves, pixel for pixel
        assert np.array_equal(rgb, exact[round(t)])
    # GOPs longer than keyframe_gop are decoded and sampled exactly.
    assert _times(path, fps=1.0, size=(32, 32), keyframe_gop=4.0) == pytest.approx(list(range(10)), abs=1e-6)


def test_keyframe_mode_samples_every_keyframe_up_to_fps(make_video: Callable[..., Path]) -> None:
    path = make_video("gop1.mp4", seconds=6.0, fps=25, gop=25, codec_options={"bf": "2", "sc_threshold": "0"})
    fast = _times(path, fps=1.0, size=(32, 32), keyframe_gop=2.0)
    assert fast == pytest.approx([0, 1, 2, 3, 4, 5], abs=1e-6)
    assert _times(path, fps=0.5, size=(32, 32), keyframe_gop=2.0) == pytest.approx([0, 2, 4], abs=1e-6)


def test_keyframe_mode_keeps_every_keyframe_of_gops_a_little_longer_than_the_step(
    make_video: Callable[..., Path],
) -> None:
    # Keyframes every 1.04 s sampled at 1 fps: "the frame on screen at t" would serve target 1 s
    # with the keyframe at 0 s again and lose one keyframe in 25; the nearest keyframe serves each
    # target, so all six are kept. With GOPs half the step, they are thinned to 1 fps.
    path = make_video("gop104.mp4", seconds=6.0, fps=25, gop=26, codec_options={"bf": "0", "sc_threshold": "0"})
    fast = _times(path, fps=1.0, size=(32, 32), keyframe_gop=2.0)
    assert fast == pytest.approx([0, 1.04, 2.08, 3.12, 4.16, 5.2], abs=1e-6)
    half = make_video("gop05.mp4", seconds=6.0, fps=25, gop=12, codec_options={"bf": "0", "sc_threshold": "0"})
    thinned = _times(half, fps=1.0, size=(32, 32), keyframe_gop=2.0)
    assert len(thinned) == 6 and all(abs(t - k) <= 0.25 for t, k in zip(thinned, range(6)))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "2"])
def test_keyframe_gop_must_be_seconds(make_video: Callable[..., Path], bad) -> None:
    path = make_video("cfr25.mp4", seconds=3.0, fps=25)
    with pytest.raises(UsageError, match="keyframe_gop"):
        iter_frames(path, keyframe_gop=bad)


def test_frames_match_the_source_pixels(make_video: Callable[..., Path]) -> None:
    frames = synth.scene_frames(11, width=96, height=64, n_frames=10, fps=10)
    path = make_video("pixels.mp4", frames=frames, fps=10, crf=12)
    for t, rgb in iter_frames(path, fps=10.0, size=None):
        src = frames[int(round(t * 10))]
        assert rgb.shape == src.shape
        assert np.abs(rgb.astype(int) - src).mean() < 6  # RGB order and range are right


# ------------------------------------------------------------------ containers


@pytest.mark.parametrize(
    ("name", "codec", "tolerance"),
    [
        ("c.mp4", "libx264", 8),
        ("c.mkv", "libx264", 8),
        ("c.webm", "libvpx-vp9", 12),
        ("c.avi", "mpeg4", 12),
        ("c.mov", "libx264", 8),
        ("c.ts", "libx264", 8),
        ("c.gif", "gif", 30),
    ],
)
def test_containers_decode(
    make_video: Callable[..., Path], name: str, codec: str, tolerance: float
) -> None:
    frames = synth.scene_frames(21, width=80, height=60, n_frames=25, fps=10)
    path = make_video(name, frames=frames, fps=10, codec=codec)
    info = probe(path)
    assert (info.width, info.height) == (80, 60)
    assert info.duration == pytest.approx(2.5, abs=0.11)
    got = list(iter_frames(path, fps=1.0, size=None))
    assert [round(t, 3) for t, _ in got] == [0.0, 1.0, 2.0]
    for t, rgb in got:
        assert np.abs(rgb.astype(int) - frames[int(round(t * 10))]).mean() < tolerance


def test_raw_h264_elementary_stream(make_video: Callable[..., Path], caplog) -> None:
    path = make_video("raw.h264", seconds=3.0, fps=10)
    info = probe(path)
    assert info.container == "h264" and info.codec == "h264"
    assert info.duration == pytest.approx(3.0, abs=1e-6)
    assert info.fps == pytest.approx(10.0)
    with caplog.at_level(logging.WARNING, logger="vmatch.decode"):
        got = _times(path, fps=1.0, size=(16, 16))
    # No timestamps in the file: times come from the stream's declared rate, with a warning.
    assert np.allclose(got, [0.0, 1.0, 2.0], atol=1e-6)
    assert any("no timestamps" in r.getMessage() for r in caplog.records)


def test_anamorphic_pixels_use_display_aspect(make_video: Callable[..., Path]) -> None:
    path = make_video("sar2.mp4", width=64, height=48, sample_aspect_ratio=Fraction(2, 1))
    info = probe(path)
    assert (info.width, info.height) == (128, 48)
    _, rgb = next(iter_frames(path, size=None))
    assert rgb.shape == (48, 128, 3)
    _, rgb = next(iter_frames(path, size=(30, 40)))
    assert rgb.shape == (30, 40, 3)


# ------------------------------------------------------------------ rotation


@pytest.mark.parametrize(("ext", "rotation"), [(".mp4", 90), (".mp4", -90), (".mp4", 180), (".mkv", 90)])
def test_rotation_metadata_is_applied(media_dir: Path, ext: str, rotation: int) -> None:
    pattern = _pattern(48, 96)
    path = synth.write_video(
        media_dir / f"rot_{rotation}{ext}", np.stack([pattern] * 5), fps=10, rotation=rotation
    )
    info = probe(path)
    assert info.rotation == rotation
    # Rotation is counter-clockwise (ffprobe / frame.rotation convention): np.rot90 with k = r/90.
    expected = np.rot90(pattern, k=rotation // 90)
    assert (info.height, info.width) == expected.shape[:2]
    _, rgb = next(iter_frames(path, size=None))
    assert rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected).mean() < 10
    # A requested output size is the size after rotation.
    _, small = next(iter_frames(path, size=(40, 20)))
    assert small.shape == (40, 20, 3)
    exp_small = np.rot90(pattern, k=rotation // 90)[:: expected.shape[0] // 4, :: expected.shape[1] // 4]
    got_small = small[:: 40 // 4, :: 20 // 4]
    assert np.abs(got_small[:4, :4].astype(int) - exp_small[:4, :4]).mean() < 40


def test_rotation_minus_90_turns_clockwise(media_dir: Path) -> None:
    # ffprobe "rotation of -90 degrees" (phone held upright): the top-left corner goes top-right.
    pattern = _pattern(48, 96)
    path = synth.write_video(media_dir / "rot_cw.mp4", np.stack([pattern] * 3), fps=10, rotation=-90)
    _, rgb = next(iter_frames(path, size=None))
    assert rgb.shape == (96, 48, 3)
    assert rgb[:10, -10:].mean() > 200  # white block now top-right
    assert rgb[:10, :10].mean() < 120


# ------------------------------------------------------------------ frame sizes


def test_odd_frame_size(make_video: Callable[..., Path]) -> None:
    path = make_video("odd.mp4", width=321, height=241, seconds=1.0, fps=10)
    info = probe(path)
    assert (info.width, info.height) == (321, 241)
    _, rgb = next(iter_frames(path, size=None))
    assert rgb.shape == (241, 321, 3)
    _, rgb = next(iter_frames(path))
    assert rgb.shape == (224, 224, 3)


def test_one_pixel_high_video_is_decoded(make_video: Callable[..., Path]) -> None:
    path = make_video("line.mkv", width=64, height=1, seconds=1.0, fps=10, codec="ffv1")
    info = probe(path)
    assert (info.width, info.height) == (64, 1)
    frames = list(iter_frames(path, fps=2.0, size=None))
    assert [rgb.shape for _, rgb in frames] == [(1, 64, 3), (1, 64, 3)]
    _, rgb = next(iter_frames(path, size=(8, 8)))
    assert rgb.shape == (8, 8, 3)


def test_too_large_frame_is_refused(tmp_path: Path) -> None:
    # A YUV4MPEG header declaring 8200x8200 (FFmpeg accepts it, vmatch does not): cheap to write.
    path = tmp_path / "huge.y4m"
    path.write_bytes(b"YUV4MPEG2 W8200 H8200 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    for call in (lambda: probe(path), lambda: list(iter_frames(path))):
        with pytest.raises(DecodeError, match="too large") as err:
            call()
        assert err.value.path == str(path)


def test_check_frame_size_limits() -> None:
    check_frame_size("a.mp4", 7680, 4320)  # 8K is fine
    check_frame_size("a.mp4", MAX_SIDE, MAX_SIDE)
    check_frame_size("a.mp4", 64, 1)
    with pytest.raises(DecodeError, match="16384x16384 is too large"):
        check_frame_size("a.mp4", 16384, 16384)
    with pytest.raises(DecodeError, match="too large"):
        check_frame_size("a.mp4", MAX_SIDE + 1, 10)
    with pytest.raises(DecodeError, match="invalid"):
        check_frame_size("a.mp4", 0, 48)


# ------------------------------------------------------------------ bad inputs


def _assert_refused(path: Path, match: str) -> None:
    for call in (lambda: probe(path), lambda: list(iter_frames(path))):
        with pytest.raises(DecodeError, match=match) as err:
            call()
        assert err.value.path == str(path)
        assert str(path) in str(err.value)
        assert "\n" not in err.value.reason


def test_missing_path(tmp_path: Path) -> None:
    _assert_refused(tmp_path / "nope.mp4", "does not exist")


def test_directory(tmp_path: Path) -> None:
    _assert_refused(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.mp4"
    p.touch()
    _assert_refused(p, "empty file")


def test_text_file_named_mp4(text_file_mp4: Path) -> None:
    _assert_refused(text_file_mp4, "not a video")


def test_audio_only_files(audio_only_file: Path, media_dir: Path) -> None:
    _assert_refused(audio_only_file, "no video stream")
    wav = synth.write_audio(media_dir / "tone.wav", seconds=0.5, codec="pcm_s16le")
    _assert_refused(wav, "no video stream")


def test_still_images_are_not_videos(tmp_path: Path) -> None:
    """PNG, JPEG, WebP and a GIF of one frame are refused as still images; a GIF of two frames is
    an animation and decodes."""
    import av

    def picture(name: str, codec: str, fmt: str | None = None, n: int = 1) -> Path:
        path = tmp_path / name
        with av.open(str(path), "w", format=fmt) as c:
            s = c.add_stream(codec, rate=2)
            s.width, s.height = 32, 24
            s.pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p", "gif": "rgb8", "libwebp": "yuv420p"}[codec]
            for i in range(n):
                img = np.full((24, 32, 3), 40 + 100 * i, np.uint8)
                for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=s.pix_fmt)):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        return path

    for path, kind in ((picture("p.png", "png", "image2"), "png"), (picture("p.jpg", "mjpeg", "image2"), "jpeg"),
                       (picture("p.webp", "libwebp", "image2"), "webp"), (picture("one.gif", "gif", "gif"), "GIF")):
        _assert_refused(path, rf"is a still image \(.*{kind}.*\), not a video")
    two = picture("two.gif", "gif", "gif", n=2)
    assert probe(two).n_frames == 2
    assert len(list(iter_frames(two, fps=2.0))) == 2


def test_impossible_frame_size_is_named(tmp_path: Path) -> None:
    """A header declaring 100000x100000 makes FFmpeg fail with EBUSY; the error names the size,
    not "Device or resource busy"."""
    path = tmp_path / "huge.y4m"
    path.write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    _assert_refused(path, "video frame size 100000x100000 is too large")
    with pytest.raises(DecodeError) as err:
        probe(path)
    assert "busy" not in str(err.value)


def test_file_with_no_streams_is_not_called_audio_only(tmp_path: Path) -> None:
    import struct

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    mvhd = box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 1000, 0) + struct.pack(">IH", 0x10000, 0x100)
               + bytes(10) + struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000) + bytes(24)
               + struct.pack(">I", 1))
    path = tmp_path / "no_streams.mp4"
    path.write_bytes(box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41") + box(b"moov", mvhd))
    _assert_refused(path, "holds no streams at all")
    with pytest.raises(DecodeError) as err:
        probe(path)
    assert "audio" not in str(err.value)


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_mp4_with_index_at_end_is_refused(
    make_video: Callable[..., Path], tmp_path: Path
) -> None:
    full = make_video("for_trunc.mp4", seconds=4.0, fps=25, width=96, height=64)
    cut = _truncate(full, tmp_path / "cut.mp4", 0.4)
    _assert_refused(cut, "truncated")


def test_truncated_faststart_mp4_yields_what_decoded(
    make_video: Callable[..., Path], tmp_path: Path, caplog
) -> None:
    full = make_video(
        "for_trunc_fast.mp4",
        seconds=4.0,
        fps=25,
        width=96,
        height=64,
        container_options={"movflags": "+faststart"},
    )
    cut = _truncate(full, tmp_path / "cut_fast.mp4", 0.4)
    with caplog.at_level(logging.WARNING, logger="vmatch.decode"):
        got = _times(cut, fps=5.0, size=(16, 16))
    assert 2 <= len(got) < 20  # some frames, not all 4 s
    assert got == sorted(got) and got[0] == 0.0
    assert any("truncated" in r.getMessage() and str(cut) in r.getMessage() for r in caplog.records)


def test_video_with_no_decodable_frame(make_video: Callable[..., Path], tmp_path: Path) -> None:
    full = make_video(
        "for_garbage.mp4", seconds=1.0, fps=25, container_options={"movflags": "+faststart"}
    )
    data = bytearray(full.read_bytes())
    i = data.find(b"mdat")
    size = int.from_bytes(data[i - 4 : i], "big")
    rng = np.random.default_rng(0)
    data[i + 4 : i - 4 + size] = rng.integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(bytes(data))
    _assert_refused(bad, "no decodable video frames")


def test_header_only_stream(tmp_path: Path) -> None:
    path = tmp_path / "header.y4m"
    path.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    _assert_refused(path, "no decodable video frames")


def test_bad_arguments_raise_usage_error(tiny_mp4: Path) -> None:
    for kwargs in ({"fps": 0}, {"fps": math.nan}, {"size": (0, 10)}, {"size": (10,)},
                   {"start": -1.0}, {"max_frames": -1}, {"threads": -2}):  # fmt: skip
        with pytest.raises(UsageError):
            iter_frames(tiny_mp4, **kwargs)


# ------------------------------------------------------------------ files


def test_find_videos(tmp_path: Path, tiny_mp4: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "z.MKV").write_bytes(b"x")
    (tmp_path / "a" / "b.mp4").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / ".hidden.mp4").write_bytes(b"x")
    (tmp_path / "a" / ".cache").mkdir()
    (tmp_path / "a" / ".cache" / "c.mp4").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    named = tmp_path / "clip.weird"
    named.write_bytes(b"x")
    videos, problems = find_videos(
        [tmp_path / "a", tmp_path / "empty", named, tmp_path / "missing.mp4", tmp_path / "a" / "b.mp4"]
    )
    assert videos == [tmp_path / "a" / "b.mp4", tmp_path / "a" / "deep" / "z.MKV", named]
    reasons = dict(problems)
    assert "no video" in reasons[str(tmp_path / "empty")]
    assert "does not exist" in reasons[str(tmp_path / "missing.mp4")]
    assert {"mp4", "mkv", "webm", "avi", "mov", "gif", "ts", "h264", "y4m"} <= VIDEO_EXTENSIONS


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "blob.bin"
    data = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p, chunk=4096) == hashlib.sha256(data).hexdigest()
    with pytest.raises(DecodeError, match="does not exist"):
        sha256_file(tmp_path / "missing.bin")


# ------------------------------------------------------------------ synth helpers these tests rely on


def test_scene_frames_deterministic_and_changing() -> None:
    a = synth.scene_frames(7, width=64, height=48, n_frames=30, fps=10)
    b = synth.scene_frames(7, width=64, height=48, n_frames=30, fps=10)
    c = synth.scene_frames(8, width=64, height=48, n_frames=30, fps=10)
    assert a.shape == (30, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 20  # other seed: unrelated footage
    assert np.abs(a[0].astype(int) - a[10]).mean() > 5  # one second apart: clearly different
    seg = synth.scene_frames(7, width=64, height=48, n_frames=5, fps=10, first_frame=12)
    assert np.array_equal(seg, a[12:17])


def test_edit_helpers() -> None:
    clip = synth.scene_frames(1, width=32, height=24, n_frames=20, fps=10)
    fast = synth.speed_change(clip, 10, 2.0)
    assert len(fast) == 10 and np.array_equal(fast[3], clip[6])
    slow = synth.fps_change(clip, 10, 25)
    assert len(slow) == 50 and np.array_equal(slow[5], clip[2])
    assert synth.concat(clip[:3], synth.black_frames(2, 32, 24)).shape == (5, 24, 32, 3)
    assert np.array_equal(synth.hflip(clip)[:, :, 0], clip[:, :, -1])
    assert synth.crop(clip, top=2, left=4, height=10, width=12).shape == (20, 10, 12, 3)
    assert synth.resize(clip, height=12, width=16).shape == (20, 12, 16, 3)
    boxed = synth.add_border(clip, top=3, bottom=3, color=(255, 0, 0))
    assert boxed.shape == (20, 30, 32, 3) and tuple(boxed[0, 0, 0]) == (255, 0, 0)
    slide = synth.text_slide("HI", 2, 64, 32)
    assert slide.shape == (2, 32, 64, 3) and 0 < (slide[0] == 255).mean() < 0.5
    assert synth.solid_frames((1, 2, 3), 1, 4, 4)[0, 0, 0].tolist() == [1, 2, 3]
    bg = synth.uninformative_frames((32, 48))
    assert bg.shape[1:] == (32, 48, 3) and len(bg) >= 40


def test_write_video_refuses_unsupported_requests(media_dir: Path) -> None:
    clip = synth.scene_frames(1, width=32, height=24, n_frames=3, fps=10)
    with pytest.raises(UsageError, match="rotation"):
        synth.write_video(media_dir / "bad_rot.avi", clip, fps=10, codec="mpeg4", rotation=90)
    with pytest.raises(UsageError, match="vfr_timestamps"):
        synth.write_video(media_dir / "bad_vfr.mp4", clip, fps=10, vfr_timestamps=[0, 0.1])
    with pytest.raises(UsageError, match="raw"):
        synth.write_video(media_dir / "bad_vfr.h264", clip, fps=10, vfr_timestamps=[0, 0.1, 0.2])
    assert not (media_dir / "bad_vfr.mp4").exists()


def test_make_demo_set(tmp_path: Path) -> None:
    demo = synth.make_demo_set(tmp_path, seed=3, width=64, height=48, n_references=2, reference_seconds=14)
    assert len(demo.references) == 2 and all(p.is_file() for p in demo.references)
    truth = demo.truth
    assert truth.reference == "ref_1" and truth.reference_path == demo.references[1]
    assert (truth.query_start, truth.query_end) == (6.0, 14.0)
    assert (truth.reference_start, truth.reference_end) == (5.0, 13.0)
    assert probe(demo.query).duration == pytest.approx(19.0, abs=0.05)
    assert probe(demo.negative_query).duration == pytest.approx(10.0, abs=0.05)


def test_decode_error_survives_pickling() -> None:
    """A DecodeError raised in a Ray task reaches the driver as itself (a lost-worker retry before)."""
    import pickle

    e = pickle.loads(pickle.dumps(DecodeError("clips/a.mp4", "is an empty file")))
    assert isinstance(e, DecodeError) and (e.path, e.reason, str(e)) == ("clips/a.mp4", "is an empty file",
                                                                          "clips/a.mp4: is an empty file")
