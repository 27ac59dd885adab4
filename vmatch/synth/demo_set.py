"""The demo collection: reference clips plus a query holding an edited copy of one of them, and
the truth about where it was planted (:func:`make_demo_set`, used by ``vmatch demo``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.edits import concat, crop, fps_change, resize
from vmatch.synth.scenes import iter_scene_frames, scene_frames
from vmatch.synth.writer import write_video


@dataclass(frozen=True)
class PlantedCopy:
    """Where a reference was copied into a query (seconds, presentation times)."""

    reference: str  # file stem of the reference video (its default reference id)
    reference_path: Path
    query_path: Path
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    edits: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoSet:
    """Files written by :func:`make_demo_set` and the truth about them."""

    directory: Path
    references: tuple[Path, ...]
    query: Path
    negative_query: Path  # a query that copies no reference
    truth: PlantedCopy


def make_demo_set(
    directory: str | os.PathLike[str],
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    n_references: int = 3,
    reference_seconds: float = 20.0,
) -> DemoSet:
    """Write a small demo collection into ``directory`` and return where the copy was planted.

    * ``references/ref_<i>.mp4``: ``n_references`` unrelated clips of ``reference_seconds``.
    * ``queries/query_copy.mp4``: 6 s of unrelated footage, then seconds 5-13 of ``ref_1``
      edited (cropped to 90 % and scaled back, brightened, re-timed from ``fps`` to 30 fps), then
      5 s of other unrelated footage.
    * ``queries/query_clean.mp4``: 10 s of unrelated footage (a query that matches nothing).

    Deterministic from ``seed``.
    """
    if n_references < 2:
        raise UsageError(f"n_references must be >= 2, got {n_references!r}")
    if reference_seconds < 14:
        raise UsageError(
            f"reference_seconds must be >= 14 (the copy spans 5-13 s), got {reference_seconds!r}"
        )
    root = Path(directory)
    ref_dir = root / "references"
    query_dir = root / "queries"
    references: list[Path] = []
    n_ref_frames = int(round(reference_seconds * fps))
    for i in range(n_references):
        p = ref_dir / f"ref_{i}.mp4"
        write_video(
            p,
            iter_scene_frames(seed * 1000 + i, width=width, height=height, n_frames=n_ref_frames, fps=fps),
            fps=fps,
            crf=23,
        )
        references.append(p)

    q_fps = 30
    ref_start, ref_end = 5.0, 13.0
    src = scene_frames(
        seed * 1000 + 1,
        width=width,
        height=height,
        n_frames=int(round((ref_end - ref_start) * fps)),
        fps=fps,
        first_frame=int(round(ref_start * fps)),
    )
    ch, cw = int(height * 0.9) // 2 * 2, int(width * 0.9) // 2 * 2
    edited = crop(src, top=(height - ch) // 2, left=(width - cw) // 2, height=ch, width=cw)
    edited = resize(edited, height=height, width=width)
    edited = np.clip(edited.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    edited = fps_change(edited, fps, q_fps)
    before_s, after_s = 6.0, 5.0
    before = scene_frames(seed * 1000 + 500, width=width, height=height,
                          n_frames=int(before_s * q_fps), fps=q_fps)  # fmt: skip
    after = scene_frames(seed * 1000 + 501, width=width, height=height,
                         n_frames=int(after_s * q_fps), fps=q_fps)  # fmt: skip
    query = query_dir / "query_copy.mp4"
    write_video(query, concat(before, edited, after), fps=q_fps, crf=23)

    negative = query_dir / "query_clean.mp4"
    write_video(
        negative,
        iter_scene_frames(seed * 1000 + 502, width=width, height=height, n_frames=10 * q_fps, fps=q_fps),
        fps=q_fps,
        crf=23,
    )
    q_start = before.shape[0] / q_fps
    truth = PlantedCopy(
        reference=references[1].stem,
        reference_path=references[1],
        query_path=query,
        query_start=q_start,
        query_end=q_start + edited.shape[0] / q_fps,
        reference_start=ref_start,
        reference_end=ref_end,
        edits=("crop 90% + rescale", "brightness +25", f"{fps}->{q_fps} fps"),
    )
    return DemoSet(
        directory=root,
        references=tuple(references),
        query=query,
        negative_query=negative,
        truth=truth,
    )
