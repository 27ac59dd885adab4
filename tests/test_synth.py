"""The synthetic-video package (vmatch.synth, issue 15: split into one module per concept): every
name that tests, benchmarks, models/ scripts and the demo import stays importable from
``vmatch.synth``, and the array and iterator forms of the generator agree frame for frame."""

from __future__ import annotations

import numpy as np

from vmatch import synth

#: names imported from vmatch.synth outside the package (benchmarks/lookalike.py uses _smooth_noise)
USED = (
    "DemoSet", "PlantedCopy", "add_border", "black_frames", "concat", "crop", "fps_change", "hflip",
    "iter_scene_frames", "make_demo_set", "resize", "scene_frames", "solid_frames", "speed_change",
    "text_slide", "uninformative_frames", "write_audio", "write_video", "_smooth_noise",
)


def test_names_importable_from_package():
    missing = [n for n in USED if not hasattr(synth, n)]
    assert not missing
    assert set(synth.__all__) <= set(USED)


def test_array_and_iterator_forms_agree():
    kw = dict(width=40, height=30, n_frames=12, fps=8.0, scene_seconds=0.5, first_frame=3)
    arr = synth.scene_frames(123, **kw)
    assert np.array_equal(arr, np.stack(list(synth.iter_scene_frames(123, **kw))))
