"""Synthetic test videos: deterministic "natural-ish" footage, edits for planted copies, a demo set.

Used by the tests, by ``vmatch demo`` and to make background footage. Only numpy and PyAV are
needed. Every generator is deterministic from its ``seed``.

Seeds >= 900000 are reserved for the footage that ``models/fit_projection.py`` puts into the
model's background set; tests, the demo and benchmarks use lower seeds, so that none of their
videos is (unfairly) part of the background.

Frame arrays are ``uint8`` ``[N, H, W, 3]`` (RGB); a single frame is ``[H, W, 3]``.

* :func:`scene_frames` / :func:`iter_scene_frames`: moving smooth shapes over a drifting
  low-frequency textured background, with a scene cut (new random layout) every few seconds.
* :func:`write_video`: encode frames with PyAV (any codec of the wheel: libx264, libx265, mpeg4,
  libvpx, libvpx-vp9, gif, ffv1...), constant or variable frame rate, optional rotation metadata.
* Edits: :func:`concat`, :func:`speed_change`, :func:`fps_change`, :func:`black_frames`,
  :func:`solid_frames`, :func:`text_slide`, :func:`hflip`, :func:`crop`, :func:`resize`,
  :func:`add_border`.
* :func:`make_demo_set`: reference videos plus a query holding an edited copy of one of them.

Modules: :mod:`~vmatch.synth.scenes` (the generator), :mod:`~vmatch.synth.writer` (files),
:mod:`~vmatch.synth.edits` (edits of copies), :mod:`~vmatch.synth.cards` (solid frames, text
slides), :mod:`~vmatch.synth.background` (the uninformative background set),
:mod:`~vmatch.synth.demo_set` (the demo collection), :mod:`~vmatch.synth.checks` (argument checks).
Every name is importable from ``vmatch.synth``.
"""

from __future__ import annotations

from vmatch.synth.background import uninformative_frames
from vmatch.synth.cards import black_frames, solid_frames, text_slide
from vmatch.synth.demo_set import DemoSet, PlantedCopy, make_demo_set
from vmatch.synth.edits import add_border, concat, crop, fps_change, hflip, resize, speed_change
from vmatch.synth.scenes import _smooth_noise, iter_scene_frames, scene_frames  # noqa: F401 (_smooth_noise: benchmarks)
from vmatch.synth.writer import write_audio, write_video

__all__ = [
    "DemoSet",
    "PlantedCopy",
    "add_border",
    "black_frames",
    "concat",
    "crop",
    "fps_change",
    "hflip",
    "iter_scene_frames",
    "make_demo_set",
    "resize",
    "scene_frames",
    "solid_frames",
    "speed_change",
    "text_slide",
    "uninformative_frames",
    "write_audio",
    "write_video",
]
