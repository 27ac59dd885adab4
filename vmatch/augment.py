"""Frame edits of the kinds copies undergo (crop, colour, blur, noise, captions, borders, rotation,
vertical re-framing, picture-in-picture, low quality), on batches of uint8 RGB frames.

Used to make matched pairs for fitting the learned whitening of ``models/fit_projection.py``
and by tests. Deterministic from a ``numpy.random.Generator``. Torch is used for resampling.
"""

from __future__ import annotations

import math

import numpy as np

FAMILIES = (
    "crop",
    "colour",
    "grayscale",
    "blur",
    "noise",
    "caption",
    "border",
    "rotate",
    "vertical",
    "pip",
    "lowres",
)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def _crop(img, rng):
    h, w, _ = img.shape
    area = rng.uniform(0.45, 0.9)
    ar = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    ch = int(min(h, round(h * math.sqrt(area / ar))))
    cw = int(min(w, round(w * math.sqrt(area * ar))))
    y = rng.integers(0, h - ch + 1)
    x = rng.integers(0, w - cw + 1)
    return _resize(img[y : y + ch, x : x + cw], h, w)


def _colour(img, rng):
    f = img.astype(np.float32)
    f = f * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40)  # contrast, brightness
    gray = f.mean(axis=2, keepdims=True)
    f = gray + (f - gray) * rng.uniform(0.3, 1.6)  # saturation
    f = f * rng.uniform(0.85, 1.15, size=(1, 1, 3))  # tint
    f = np.clip(f, 0, 255)
    gamma = rng.uniform(0.7, 1.4)
    return (255.0 * (f / 255.0) ** gamma).astype(np.uint8)


def _grayscale(img, rng):
    g = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _blur(img, rng):
    h, w, _ = img.shape
    s = rng.uniform(0.25, 0.6)
    return _resize(_resize(img, max(8, int(h * s)), max(8, int(w * s))), h, w)


def _noise(img, rng):
    n = rng.normal(0, rng.uniform(4, 18), img.shape)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def _caption(img, rng):
    out = img.copy()
    h, w, _ = img.shape
    for _ in range(rng.integers(1, 3)):
        bh = int(h * rng.uniform(0.06, 0.18))
        bw = int(w * rng.uniform(0.3, 0.9))
        y = rng.integers(0, h - bh + 1)
        x = rng.integers(0, w - bw + 1)
        colour = rng.integers(0, 256, 3)
        box = out[y : y + bh, x : x + bw]
        if rng.random() < 0.5:  # semi-transparent banner
            box[:] = (0.4 * box + 0.6 * colour).astype(np.uint8)
        else:
            box[:] = colour
        # "letters": vertical strokes of a contrasting colour
        stroke = 255 - colour
        n = max(3, bw // max(4, bh // 2))
        xs = np.linspace(2, bw - 3, n).astype(int)
        for xi in xs:
            if rng.random() < 0.8:
                box[bh // 5 : bh - bh // 5, xi : xi + max(1, bh // 8)] = stroke
    return out


def _border(img, rng):
    h, w, _ = img.shape
    s = rng.uniform(0.65, 0.92)
    ih, iw = int(h * s), int(w * s)
    if rng.random() < 0.5:  # letterbox: full width, bars top and bottom
        ih, iw = int(h * s), w
    canvas = np.empty_like(img)
    canvas[:] = rng.integers(0, 256, 3) if rng.random() < 0.5 else 0
    y = (h - ih) // 2
    x = (w - iw) // 2
    canvas[y : y + ih, x : x + iw] = _resize(img, ih, iw)
    return canvas


def _rotate(img, rng):
    import torch
    import torch.nn.functional as F

    h, w, _ = img.shape
    ang = math.radians(rng.uniform(-12, 12))
    zoom = 1.0 + abs(math.sin(ang)) * 0.6
    c, s = math.cos(ang) / zoom, math.sin(ang) / zoom
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]], dtype=torch.float32)
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def _vertical(img, rng):
    """9:16 re-framing of a (squashed) 16:9 frame: a centre strip, or the frame letterboxed in a tall canvas."""
    h, w, _ = img.shape
    if rng.random() < 0.5:
        frac = (9 / 16) / (16 / 9) * rng.uniform(1.0, 1.6)  # strip width as a fraction of the width
        cw = max(8, int(w * min(frac, 0.9)))
        x = int((w - cw) * rng.uniform(0.3, 0.7))
        return _resize(img[:, x : x + cw], h, w)
    ih = int(h * (9 / 16) ** 2 * rng.uniform(1.0, 1.3))  # landscape band in a portrait canvas
    canvas = _resize(_blur(img, rng), h, w) // 2
    y = (h - ih) // 2
    canvas[y : y + ih] = _resize(img, ih, w)
    return canvas


def _pip(img, rng, other):
    h, w, _ = img.shape
    s = rng.uniform(0.4, 0.65)
    ih, iw = int(h * s), int(w * s)
    canvas = other.copy()
    y = rng.integers(0, h - ih + 1)
    x = rng.integers(0, w - iw + 1)
    canvas[y : y + ih, x : x + iw] = _resize(img, ih, iw)
    return canvas


def _lowres(img, rng):
    h, w, _ = img.shape
    s = rng.uniform(0.15, 0.35)
    small = _resize(img, max(8, int(h * s)), max(8, int(w * s)))
    q = rng.integers(8, 24)
    small = (small // q) * q + q // 2
    return _resize(np.clip(small, 0, 255).astype(np.uint8), h, w)


_FUNCS = {
    "crop": _crop,
    "colour": _colour,
    "grayscale": _grayscale,
    "blur": _blur,
    "noise": _noise,
    "caption": _caption,
    "border": _border,
    "rotate": _rotate,
    "vertical": _vertical,
    "lowres": _lowres,
}


def augment(
    frame: np.ndarray,
    rng: np.random.Generator,
    *,
    families: tuple[str, ...] | None = None,
    other: np.ndarray | None = None,
    max_ops: int = 3,
) -> np.ndarray:
    """Apply 1..max_ops random edits (from ``families``) to one uint8 RGB frame [H, W, 3].

    ``other`` is the background frame for picture-in-picture (skipped when None).
    """
    fams = list(families or FAMILIES)
    if other is None and "pip" in fams:
        fams.remove("pip")
    n = int(rng.integers(1, max_ops + 1))
    chosen = rng.choice(len(fams), size=min(n, len(fams)), replace=False)
    out = frame
    for i in chosen:
        fam = fams[int(i)]
        out = _pip(out, rng, other) if fam == "pip" else _FUNCS[fam](out, rng)
    return np.ascontiguousarray(out, dtype=np.uint8)
