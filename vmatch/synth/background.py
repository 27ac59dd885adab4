"""The background set of uninformative frames (blank screens, fades, title cards, colour bars,
static) against which frame scores are normalised: :func:`uninformative_frames`."""

from __future__ import annotations

import math

import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.cards import solid_frames, text_slide
from vmatch.synth.scenes import _smooth_noise


def uninformative_frames(size: tuple[int, int] = (224, 224), *, seed: int = 0) -> np.ndarray:
    """Frames that carry no distinctive content, ``uint8 [N, H, W, 3]`` with ``size=(H, W)``.

    Used as a background set for score normalisation: frames of real videos that look like these
    (blank screens, fades, title cards, colour bars, static) match everything and must not count
    as evidence of copying. Contents (60 frames, deterministic from ``seed``): solid colours
    (black, white, greys, primaries and random colours), linear and radial gradients, SMPTE-like
    colour bars, text slides (white on black, black on white, coloured), small captions on black,
    and noise (uniform, Gaussian grey, low-frequency colour blobs).
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in size)
    ):
        raise UsageError(f"size must be (height, width) as two positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 99])
    out: list[np.ndarray] = []
    solid = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (64, 64, 64), (192, 192, 192),
             (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
             (16, 16, 16), (235, 235, 235)]  # fmt: skip
    solid += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(7)]
    out.extend(solid_frames(c, 1, w, h)[0] for c in solid)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    for k in range(12):
        c1 = rng.integers(0, 256, 3).astype(np.float32)
        c2 = rng.integers(0, 256, 3).astype(np.float32)
        if k % 3 == 0:
            u = np.broadcast_to(xx, (h, w, 1))
        elif k % 3 == 1:
            u = np.broadcast_to(yy, (h, w, 1))
        else:
            u = np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / math.sqrt(0.5)
        out.append(np.clip(c1 * (1 - u) + c2 * u, 0, 255).astype(np.uint8))
    for fade in (0.0, 0.25, 0.5):  # colour bars, plain and faded to black
        bars = np.array([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
                         (192, 0, 192), (192, 0, 0), (0, 0, 192)], np.float32)  # fmt: skip
        idx = np.minimum((np.arange(w) * 7) // w, 6)
        frame = np.broadcast_to(bars[idx][None], (h, w, 3)) * (1 - fade)
        out.append(frame.astype(np.uint8))
    texts = ["THE END", "TITLE", "CHAPTER 1", "SUBSCRIBE", "COPYRIGHT 2024", "LOADING...",
             "PLEASE WAIT", "NO SIGNAL", "PART 2", "CREDITS", "BREAKING NEWS", "INTERMISSION"]  # fmt: skip
    styles = [((255, 255, 255), (0, 0, 0)), ((0, 0, 0), (255, 255, 255)),
              ((255, 255, 0), (0, 0, 128)), ((255, 255, 255), (40, 40, 40))]  # fmt: skip
    for i, text in enumerate(texts):
        fg, bg = styles[i % len(styles)]
        out.append(text_slide(text, 1, w, h, fg=fg, bg=bg)[0])
    for text in ("WWW.EXAMPLE.COM", "12:00", "ABC 123"):  # small caption on black
        small = text_slide(text, 1, max(1, w // 3), max(1, h // 6))[0]
        frame = np.zeros((h, w, 3), np.uint8)
        sh, sw = small.shape[:2]
        frame[h - sh - h // 12 : h - h // 12, (w - sw) // 2 : (w - sw) // 2 + sw] = small
        out.append(frame)
    for _ in range(3):
        out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    for _ in range(3):
        grey = np.clip(rng.normal(128, 40, (h, w, 1)), 0, 255).astype(np.uint8)
        out.append(np.repeat(grey, 3, axis=2))
    for _ in range(4):
        blobs = _smooth_noise(rng, h, w, cells=int(rng.integers(2, 6)))
        out.append((blobs * 255).astype(np.uint8))
    return np.stack(out)
