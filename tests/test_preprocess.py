"""Removal of uniform borders before the CNN."""

import numpy as np

from vmatch.preprocess import border_box, crop_borders
from vmatch.synth import add_border, resize, scene_frames


def _scene(seed=5, h=224, w=224):
    return scene_frames(seed, width=w, height=h, n_frames=1, fps=1.0)[0]


def test_frame_without_borders_is_returned_as_is():
    f = _scene()
    assert border_box(f) == (0, 224, 0, 224)
    assert crop_borders(f) is f


def test_letterbox_pillarbox_and_padding_are_removed():
    content = _scene(h=160, w=224)
    letterbox = add_border(content[None], top=32, bottom=32, left=0, right=0, color=(0, 0, 0))[0]
    assert letterbox.shape == (224, 224, 3)
    t, b, l, r = border_box(letterbox)
    assert abs(t - 32) <= 1 and abs(b - 192) <= 1 and (l, r) == (0, 224)
    back = crop_borders(letterbox)
    ref = resize(content[None], height=224, width=224)[0]
    assert np.abs(back.astype(int) - ref.astype(int)).mean() < 6  # the content, resized like the reference
    pillar = add_border(_scene(h=224, w=150)[None], top=0, bottom=0, left=37, right=37, color=(20, 20, 20))[0]
    assert border_box(pillar)[2:] == (37, 187)
    padded = add_border(_scene(h=180, w=180)[None], top=22, bottom=22, left=22, right=22, color=(200, 30, 90))[0]
    assert border_box(padded) == (22, 202, 22, 202)


def test_one_sided_or_thin_strips_are_kept():
    f = _scene()
    one_side = f.copy()
    one_side[:40] = 0  # a dark band at the top only: content, not a letterbox
    assert border_box(one_side) == (0, 224, 0, 224)
    thin = add_border(_scene(h=220, w=224)[None], top=2, bottom=2, left=0, right=0, color=(0, 0, 0))[0]
    assert border_box(thin) == (0, 224, 0, 224)
    slide = np.zeros((224, 224, 3), np.uint8)
    slide[100:124, 20:200] = 255  # a thin text line on black: never cropped down to the line
    assert border_box(slide)[:2] == (0, 224)
