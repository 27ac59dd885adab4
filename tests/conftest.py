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
