"""Content-free frames: solid colours, black frames and text slides (a 5x7 block font), the
blank screens and title cards that real videos hold between their content."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.checks import _check_positive_int


def solid_frames(
    color: Sequence[int] | int, n: int, width: int, height: int
) -> np.ndarray:
    """``n`` frames of one colour (RGB triple or a grey level)."""
    n = _check_positive_int("n", n, minimum=0)
    width = _check_positive_int("width", width)
    height = _check_positive_int("height", height)
    rgb = np.broadcast_to(np.asarray(color, dtype=np.int64), (3,))
    if np.any(rgb < 0) or np.any(rgb > 255):
        raise UsageError(f"color values must be in 0..255, got {color!r}")
    out = np.empty((n, height, width, 3), np.uint8)
    out[...] = rgb.astype(np.uint8)
    return out


def black_frames(n: int, width: int, height: int) -> np.ndarray:
    """``n`` black frames of ``width`` x ``height``."""
    return solid_frames(0, n, width, height)


_FONT_ROWS = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "!": "00100 00100 00100 00100 00100 00000 00100",
    "?": "01110 10001 00001 00010 00100 00000 00100",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    "/": "00001 00001 00010 00100 01000 10000 10000",
    "#": "11111 11111 11111 11111 11111 11111 11111",
}


def _glyph(ch: str) -> np.ndarray:
    rows = _FONT_ROWS.get(ch.upper(), _FONT_ROWS["?"])
    return np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)


def _text_mask(text: str) -> np.ndarray:
    """Bitmap of ``text`` (lines split on newlines) in the 5x7 block font, 1 px spacing."""
    lines = text.split("\n") or [""]
    cols = max(1, max(len(line) for line in lines))
    mask = np.zeros((len(lines) * 8 + 1, cols * 6 + 1), dtype=bool)
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            mask[1 + r * 8 : 1 + r * 8 + 7, 1 + c * 6 : 1 + c * 6 + 5] = _glyph(ch)
    return mask


def text_slide(
    text: str,
    n: int,
    width: int,
    height: int,
    *,
    fg: Sequence[int] = (255, 255, 255),
    bg: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """``n`` identical frames showing ``text`` centred in large block letters (5x7 font, scaled by
    the largest integer factor that fits 90 % of the frame; letters A-Z, digits, ``.,!?-:'/``;
    other characters print as ``?``). Lines are split on ``\\n``."""
    frames = solid_frames(bg, n, width, height)
    mask = _text_mask(text)
    scale = max(1, min(int(width * 0.9) // mask.shape[1], int(height * 0.9) // mask.shape[0]))
    big = np.kron(mask, np.ones((scale, scale), dtype=bool))
    bh, bw = min(big.shape[0], height), min(big.shape[1], width)
    y0, x0 = (height - bh) // 2, (width - bw) // 2
    region = frames[:, y0 : y0 + bh, x0 : x0 + bw]
    region[:, big[:bh, :bw]] = np.asarray(fg, dtype=np.uint8)
    return frames
