"""Frame preprocessing before the CNN: removal of uniform borders (letterbox, pillarbox, padding).

Where it sits: decode -> sample -> **preprocess** -> embed.

Copies are often letterboxed, pillarboxed (a landscape video in a 9:16 frame) or padded with a
solid colour. The bars carry no content but change the CNN's view of the frame, so they are cut
off, on references and queries alike, before the frame is resized back to the model's input size.
A bar is a run of rows (or columns) at an edge of the frame that are flat (pixel standard deviation
below ``flat_std``) and of the same colour as the outermost row (within ``same_tol``); bars are cut
only in pairs of similar size (top and bottom, or left and right).
"""

from __future__ import annotations

import numpy as np


def _bar(lines_mean: np.ndarray, lines_std: np.ndarray, *, flat_std: float, same_tol: float) -> int:
    """Length of the run of flat lines of one colour at the start of the sequence."""
    flat = lines_std < flat_std
    if not flat[0]:
        return 0
    same = np.abs(lines_mean - lines_mean[0]).max(axis=-1) < same_tol
    ok = flat & same
    n = int(np.argmin(ok)) if not ok.all() else ok.size
    return n


def border_box(
    frame: np.ndarray, *, flat_std: float = 6.0, same_tol: float = 12.0, min_bar: int = 4, min_keep: float = 0.3
) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` row/column bounds of the content of ``frame`` (uint8 [H, W, 3]).

    Bars thinner than ``min_bar`` pixels are ignored; a crop keeping less than ``min_keep`` of a
    dimension is not made (the frame is then probably a slide or a dark scene, not a letterbox).
    """
    h, w = frame.shape[:2]
    f = frame.astype(np.float32)
    # Flatness per colour channel (a bar of a saturated colour is flat in each channel).
    row_mean, row_std = f.mean(axis=1), f.std(axis=1).max(axis=-1)
    col_mean, col_std = f.mean(axis=0), f.std(axis=0).max(axis=-1)
    kw = dict(flat_std=flat_std, same_tol=same_tol)
    top = _bar(row_mean, row_std, **kw)
    bottom = _bar(row_mean[::-1], row_std[::-1], **kw)
    left = _bar(col_mean, col_std, **kw)
    right = _bar(col_mean[::-1], col_std[::-1], **kw)
    top, bottom = _pair(top, bottom, min_bar)
    left, right = _pair(left, right, min_bar)
    if h - top - bottom < min_keep * h:
        top = bottom = 0
    if w - left - right < min_keep * w:
        left = right = 0
    return top, h - bottom, left, w - right


def _pair(a: int, b: int, min_bar: int) -> tuple[int, int]:
    """Bars come in pairs (letterbox, pillarbox, centred padding): both at least ``min_bar`` and of
    similar size. A flat strip on one side only is more likely content (a dark floor, the margin
    of a terminal) and is kept, so that a reference and its copy are cut alike."""
    if min(a, b) < min_bar or abs(a - b) > 0.25 * max(a, b) + 3:
        return 0, 0
    return a, b


def crop_borders(frame: np.ndarray, **kwargs) -> np.ndarray:
    """``frame`` without its uniform borders, resized back to its own size (uint8 [H, W, 3]).

    Returns the frame itself (no copy) when it has no border to remove.
    """
    h, w = frame.shape[:2]
    t, b, l, r = border_box(frame, **kwargs)
    if (t, b, l, r) == (0, h, 0, w):
        return frame
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frame[t:b, l:r])).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
