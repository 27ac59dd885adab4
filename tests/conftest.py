"""Shared pytest fixtures: tiny synthetic videos written with :mod:`vmatch.synth` in temp dirs.

Videos are small (64x48 .. 160x120, a few seconds) so the whole suite stays fast. Fixtures that
only read their files are session-scoped; use ``make_video`` to get a cached clip with any
parameters, or the named fixtures below for common cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vmatch import synth


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide directory for generated videos (read-only for tests: copy before editing)."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_video(media_dir: Path) -> Callable[..., Path]:
    """Factory ``make_video(name, *, seconds=2.0, fps=25, width=64, height=48, seed=0,
    frames=None, **write_video_options) -> Path``.

    Writes ``media_dir / name`` from :func:`vmatch.synth.scene_frames` (or the given ``frames``
    array) with :func:`vmatch.synth.write_video`; the same call returns the cached file. Do not
    modify the returned file (copy it first).
    """
    cache: dict[str, tuple[Any, Path]] = {}

    def make(
        name: str,
        *,
        seconds: float = 2.0,
        fps: int | float | Fraction = 25,
        width: int = 64,
        height: int = 48,
        seed: int = 0,
        frames: np.ndarray | None = None,
        **options: Any,
    ) -> Path:
        digest = "" if frames is None else hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest()
        key = (seconds, fps, width, height, seed, digest, tuple(sorted(options.items(), key=str)))
        if name in cache:
            if cache[name][0] != key:
                raise ValueError(f"make_video: {name!r} already made with other parameters")
            return cache[name][1]
        if frames is None:
            n = max(1, int(round(seconds * float(fps))))
            frames = synth.scene_frames(seed, width=width, height=height, n_frames=n, fps=float(fps))
        path = synth.write_video(media_dir / name, frames, fps=fps, **options)
        cache[name] = (key, path)
        return path

    return make


@pytest.fixture(scope="session")
def tiny_mp4(make_video: Callable[..., Path]) -> Path:
    """64x48, 2 s at 25 fps, H.264 in MP4 (50 frames, seed 0)."""
    return make_video("tiny.mp4")


@pytest.fixture(scope="session")
def vfr_video(media_dir: Path) -> tuple[Path, list[float]]:
    """A variable-frame-rate MP4 (80x60) and the presentation time of each of its frames."""
    times = [0.0, 0.04, 0.1, 0.35, 0.4, 0.9, 1.25, 1.3, 1.33, 2.0, 2.05, 2.6, 3.1]
    frames = synth.scene_frames(5, width=80, height=60, n_frames=len(times), fps=10)
    path = synth.write_video(media_dir / "vfr.mp4", frames, fps=10, vfr_timestamps=times)
    return path, times


@pytest.fixture(scope="session")
def audio_only_file(media_dir: Path) -> Path:
    """An AAC audio-only .m4a file (1 s sine tone)."""
    return synth.write_audio(media_dir / "tone.m4a", seconds=1.0)


@pytest.fixture
def text_file_mp4(tmp_path: Path) -> Path:
    """A text file named like a video."""
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    return p


# ------------------------------------------------------------------ matching fixtures
# Shared by tests/test_pipeline.py and tests/test_cli.py: reference clips of synthetic scenes and
# queries holding planted (edited) copies of them, with the truth of every copy. Small frames
# (160x90, 25 fps) keep encoding cheap; the CNN sees 224x224 whatever the source size.

from dataclasses import dataclass  # noqa: E402

MATCH_W, MATCH_H, MATCH_FPS = 160, 90, 25


@dataclass(frozen=True)
class Planted:
    """Query ``query`` shows reference ``reference`` over ``[query_start, query_end)`` (seconds),
    which is ``[reference_start, reference_end)`` of the reference (end = end of the last frame)."""

    query: Path
    reference: str
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float


@dataclass(frozen=True)
class MatchSet:
    directory: Path
    references: dict[str, Path]  # reference id (file stem) -> file
    planted: dict[str, Planted]  # name of the case -> truth
    unrelated: tuple[Path, ...]  # queries that copy no reference


def scene_clip(seed: int, start: float, seconds: float, fps: float = MATCH_FPS,
               width: int = MATCH_W, height: int = MATCH_H) -> np.ndarray:
    """Seconds ``[start, start + seconds)`` of the endless synthetic clip ``seed`` at ``fps``."""
    return synth.scene_frames(seed, width=width, height=height, n_frames=int(round(seconds * fps)),
                              fps=fps, first_frame=int(round(start * fps)))


def write_clip(path: Path, frames: np.ndarray, fps: float = MATCH_FPS, **options: Any) -> Path:
    """:func:`vmatch.synth.write_video` with a reproducible encoder (MPEG-4 part 2 in MP4).

    libx264 through PyAV does not give the same decoded pixels from one encode to the next within
    a process (even with threads=1; lossless crf=0 does), so scores near a threshold would vary
    from run to run. mpeg4 is lossy and gives identical bytes every time."""
    options.setdefault("codec", "mpeg4")
    return synth.write_video(path, frames, fps=fps, **options)


#: reference id -> (seed, seconds)
MATCH_REFERENCES = {"ref_alpha": (1001, 30.0), "ref_bravo": (1002, 30.0), "ref_charlie": (1003, 30.0),
                    "ref_delta": (1004, 20.0)}


@pytest.fixture(scope="session")
def match_set(tmp_path_factory: pytest.TempPathFactory) -> MatchSet:
    """Four references and planted copies of them (see the code for the truth of each case)."""
    root = tmp_path_factory.mktemp("match_set")
    F = MATCH_FPS
    refs: dict[str, Path] = {}
    for rid, (seed, secs) in MATCH_REFERENCES.items():
        refs[rid] = write_clip(root / "refs" / f"{rid}.mp4", scene_clip(seed, 0, secs), F)
    qdir = root / "queries"
    planted: dict[str, Planted] = {}

    def plant(name, frames, fps, reference, q0, q1, r0, r1):
        path = write_clip(qdir / f"{name}.mp4", frames, fps)
        planted[name] = Planted(path, reference, q0, q1, r0, r1)

    # (a) trimmed copy: seconds 10-19 of a 30 s reference, alone.
    plant("trim", scene_clip(1001, 10, 9), F, "ref_alpha", 0.0, 9.0, 10.0, 19.0)
    # (b) seconds 5-15 of ref_bravo inserted between 8 s and 7 s of unrelated footage.
    plant("insert", synth.concat(scene_clip(1101, 0, 8), scene_clip(1002, 5, 10), scene_clip(1102, 0, 7)),
          F, "ref_bravo", 8.0, 18.0, 5.0, 15.0)
    # (c) seconds 6-22 of ref_charlie played 0.75x (alone) and 1.33x (after 5 s of unrelated footage).
    slow = synth.speed_change(scene_clip(1003, 6, 16), F, 0.75)
    plant("slow", slow, F, "ref_charlie", 0.0, len(slow) / F, 6.0, 22.0)
    fast = synth.speed_change(scene_clip(1003, 6, 16), F, 1.33)
    plant("fast", synth.concat(scene_clip(1103, 0, 5), fast), F, "ref_charlie", 5.0, 5.0 + len(fast) / F,
          6.0, 22.0)
    # (d) frame-rate changes: 25 -> 30 fps (alone) and 25 -> 15 fps (after 4 s of unrelated footage).
    plant("fps30", synth.fps_change(scene_clip(1001, 4, 12), F, 30), 30, "ref_alpha", 0.0, 12.0, 4.0, 16.0)
    plant("fps15", synth.concat(scene_clip(1104, 0, 4, fps=15), synth.fps_change(scene_clip(1004, 3, 12), F, 15)),
          15, "ref_delta", 4.0, 16.0, 3.0, 15.0)
    unrelated = tuple(
        write_clip(qdir / f"unrelated_{s}.mp4", scene_clip(s, 0, 15), F) for s in (1201, 1202, 1203)
    )
    return MatchSet(root, refs, planted, unrelated)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, match_set: MatchSet) -> dict[str, tuple[Path, str]]:
    """Inputs that cannot be matched or indexed: name -> (path, words the error must contain)."""
    d = tmp_path_factory.mktemp("bad_inputs")
    out: dict[str, tuple[Path, str]] = {}
    empty = d / "empty_file.mp4"
    empty.touch()
    out["empty"] = (empty, "empty")
    # moov atom at the end (no faststart): cutting the file loses the index.
    data = match_set.references["ref_delta"].read_bytes()
    trunc = d / "truncated_clip.mp4"
    trunc.write_bytes(data[: len(data) * 2 // 5])
    out["truncated"] = (trunc, "truncated")
    text = d / "notes_as_video.mp4"
    text.write_text("this is not a video\n" * 20)
    out["text"] = (text, "not a video")
    out["audio"] = (synth.write_audio(d / "tone_only.m4a", seconds=1.0), "no video stream")
    # Valid container, video packets overwritten with noise: nothing decodes.
    src = write_clip(d / "src_for_garbage.mp4", scene_clip(1301, 0, 1.0),
                     container_options={"movflags": "+faststart"})
    raw = bytearray(src.read_bytes())
    src.unlink()
    i = raw.find(b"mdat")
    size = int.from_bytes(raw[i - 4 : i], "big")
    raw[i + 4 : i - 4 + size] = np.random.default_rng(0).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    garbage = d / "garbage_packets.mp4"
    garbage.write_bytes(bytes(raw))
    out["garbage"] = (garbage, "no decodable video frames")
    empty_dir = d / "no_videos_here"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("no videos\n")
    out["empty_dir"] = (empty_dir, "no video files")
    out["missing"] = (d / "does_not_exist.mp4", "does not exist")
    return out


# ------------------------------------------------------------------ the command line, in-process
def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``vmatch ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from vmatch.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
