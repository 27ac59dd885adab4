"""The tiny synthetic copy set several tests share: two or three references and queries that are
a copy hidden after unrelated footage, a mirrored copy and unrelated footage (160x90, 25 fps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vmatch import synth

W, H, F = 160, 90, 25


def frames(seed: int, seconds: float, *, start: float = 0.0) -> np.ndarray:
    return synth.scene_frames(seed, width=W, height=H, n_frames=int(round(seconds * F)), fps=F,
                              first_frame=int(round(start * F)))


def write(path: Path, array: np.ndarray) -> Path:
    return synth.write_video(path, array, fps=F, codec="mpeg4")


def make_copy_set(d: Path, seed: int, *, n_refs: int = 2) -> tuple[Path, dict[str, Path]]:
    """References ``ref_a`` (8 s), ``ref_b`` (6 s)[, ``ref_c`` (5 s)] of seeds ``seed+1..`` in
    ``d/refs``, and the queries ``hidden`` (3 s unrelated, then ref_a from 2 s for 5 s),
    ``mirrored`` (ref_b mirrored) and ``unrelated`` in ``d/queries``."""
    refs = d / "refs"
    refs.mkdir()
    lengths = {"ref_a": 8.0, "ref_b": 6.0, "ref_c": 5.0}
    for i, (name, sec) in enumerate(list(lengths.items())[:n_refs]):
        write(refs / f"{name}.mp4", frames(seed + 1 + i, sec))
    q = d / "queries"
    q.mkdir()
    queries = {
        "hidden": write(q / "hidden.mp4", np.concatenate([frames(seed + 4, 3.0), frames(seed + 1, 5.0, start=2.0)])),
        "mirrored": write(q / "mirrored.mp4", np.ascontiguousarray(frames(seed + 2, 6.0)[:, :, ::-1])),
        "unrelated": write(q / "unrelated.mp4", frames(seed + 5, 5.0 if n_refs == 3 else 6.0)),
    }
    return refs, queries
